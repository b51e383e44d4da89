"""Asset checks built from pure validation functions: pandera schemas and the plan checks.

A failing blocking check stops every downstream step of the same run, so bad data never reaches
a write. Failures come back as a markdown table naming each offending record.
"""

from collections.abc import Callable

import dagster as dg
import pandas as pd
import pandera.pandas as pa

from halo_sync_pipeline.defs.metadata import markdown_table, with_tenant_names
from halo_sync_pipeline.schemas.sources import validation_failures

MAX_FAILURE_ROWS = 50


def failure_result(
    failures: pd.DataFrame | None,
    *,
    severity: dg.AssetCheckSeverity,
    what: str,
    tenant_names: pd.Series | None = None,
    what_to_do: str | None = None,
) -> dg.AssetCheckResult:
    """Pass, or fail with one row per failure (tenant names beside tenant ids) and what to do about it."""
    if failures is None or failures.empty:
        return dg.AssetCheckResult(passed=True, metadata={"failures": 0})
    metadata: dict = {
        "failures": len(failures),
        "failure_cases": dg.MetadataValue.md(
            markdown_table(with_tenant_names(failures, tenant_names), max_rows=MAX_FAILURE_ROWS)
        ),
    }
    if what_to_do:
        metadata = {"what_to_do": dg.MetadataValue.text(what_to_do), **metadata}
    return dg.AssetCheckResult(passed=False, severity=severity, description=f"{len(failures)} {what}", metadata=metadata)


def tenant_names_of(frame: pd.DataFrame) -> pd.Series:
    """tenant_id -> tenant name, from a plan frame that has both (company_mappings, contact_changes)."""
    return frame.drop_duplicates("tenant_id").set_index("tenant_id")["tenant_name"]


def schema_check(
    asset: dg.AssetsDefinition | dg.AssetKey, schema: type[pa.DataFrameModel]
) -> dg.AssetChecksDefinition:
    """A blocking check validating the asset against its pandera model, lazily (all failures at once)."""
    asset_name = (asset if isinstance(asset, dg.AssetKey) else asset.key).path[-1]

    @dg.asset_check(
        asset=asset,
        name=f"{asset_name}_schema",
        blocking=True,
        description=f"Every row of {asset_name} satisfies {schema.__name__} (types, keys, normalisation).",
    )
    def _check(context: dg.AssetCheckExecutionContext, value: pd.DataFrame) -> dg.AssetCheckResult:
        return failure_result(
            validation_failures(schema, value), severity=dg.AssetCheckSeverity.ERROR, what="schema violations"
        )

    return _check


def rule_check(
    asset: dg.AssetsDefinition | str,
    name: str,
    description: str,
    find_problems: Callable[[pd.DataFrame], pd.DataFrame],
    *,
    blocking: bool,
    what: str | None = None,
    what_to_do: str | None = None,
) -> dg.AssetChecksDefinition:
    """A check on one asset whose logic is a pure function returning one row per problem (empty = pass).
    The description says what the engineer should do; so does each failing result."""
    severity = dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN

    @dg.asset_check(asset=asset, name=name, blocking=blocking, description=description)
    def _check(context: dg.AssetCheckExecutionContext, value: pd.DataFrame) -> dg.AssetCheckResult:
        return failure_result(
            find_problems(value), severity=severity, what=what or f"problems ({name})", what_to_do=what_to_do
        )

    return _check
