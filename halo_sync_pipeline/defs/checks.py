"""Asset checks built from pure validation functions: pandera schemas and the plan checks.

A failing blocking check stops every downstream step of the same run, so bad data never reaches
a write. Failures come back as a markdown table naming each offending record.
"""

from collections.abc import Callable

import dagster as dg
import pandas as pd
import pandera.pandas as pa

from halo_sync_pipeline.defs.metadata import markdown_table
from halo_sync_pipeline.schemas.sources import validation_failures

MAX_FAILURE_ROWS = 50


def failure_result(
    failures: pd.DataFrame | None, *, severity: dg.AssetCheckSeverity, what: str
) -> dg.AssetCheckResult:
    if failures is None or failures.empty:
        return dg.AssetCheckResult(passed=True, metadata={"failures": 0})
    return dg.AssetCheckResult(
        passed=False,
        severity=severity,
        description=f"{len(failures)} {what}",
        metadata={
            "failures": len(failures),
            "failure_cases": dg.MetadataValue.md(markdown_table(failures, max_rows=MAX_FAILURE_ROWS)),
        },
    )


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
) -> dg.AssetChecksDefinition:
    """A check on one asset whose logic is a pure function returning one row per problem (empty = pass)."""
    severity = dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN

    @dg.asset_check(asset=asset, name=name, blocking=blocking, description=description)
    def _check(context: dg.AssetCheckExecutionContext, value: pd.DataFrame) -> dg.AssetCheckResult:
        return failure_result(find_problems(value), severity=severity, what=f"problems ({name})")

    return _check
