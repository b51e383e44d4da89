"""Asset checks built from pure validation functions: pandera schemas and the plan checks.

Each check is declared on its asset (`check_specs`) and evaluated inside the asset's own step: one step
instead of one per check, so a run writes far fewer events. A failing blocking check still stops every
downstream step of the same run, so bad data never reaches a write. Failures come back as a markdown
table naming each offending record (tenant names beside tenant ids).
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import pandas as pd
import pandera.pandas as pa

from halo_sync_pipeline.defs.metadata import markdown_table, with_tenant_names
from halo_sync_pipeline.schemas.sources import validation_failures

MAX_FAILURE_ROWS = 50
ERROR, WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN


def failure_result(
    failures: pd.DataFrame | None,
    *,
    check_name: str,
    severity: dg.AssetCheckSeverity,
    what: str,
    asset: str | None = None,
    tenant_names: pd.Series | None = None,
    what_to_do: str | None = None,
) -> dg.AssetCheckResult:
    """Pass, or fail with one row per failure (tenant names beside tenant ids) and what to do about it."""
    key = dg.AssetKey(asset) if asset else None
    if failures is None or failures.empty:
        return dg.AssetCheckResult(check_name=check_name, asset_key=key, passed=True, metadata={"failures": 0})
    metadata: dict[str, Any] = {
        "failures": len(failures),
        "failure_cases": dg.MetadataValue.md(
            markdown_table(with_tenant_names(failures, tenant_names), max_rows=MAX_FAILURE_ROWS)
        ),
    }
    if what_to_do:
        metadata = {"what_to_do": dg.MetadataValue.text(what_to_do), **metadata}
    return dg.AssetCheckResult(
        check_name=check_name,
        asset_key=key,
        passed=False,
        severity=severity,
        description=f"{len(failures)} {what}",
        metadata=metadata,
    )


def tenant_names_of(frame: pd.DataFrame) -> pd.Series:
    """tenant_id -> tenant name, from a plan frame that has both (company_mappings, contact_changes)."""
    return frame.drop_duplicates("tenant_id").set_index("tenant_id")["tenant_name"]


def schema_check_name(asset: str) -> str:
    return f"{asset}_schema"


def schema_spec(asset: str, schema: type[pa.DataFrameModel]) -> dg.AssetCheckSpec:
    """The blocking check that the asset's frame satisfies its pandera model (evaluated in the asset's step)."""
    return dg.AssetCheckSpec(
        name=schema_check_name(asset),
        asset=asset,
        blocking=True,
        description=f"Every row of {asset} satisfies {schema.__name__} (columns, types, keys, normalisation). A "
        "failure means a structural break of the frame (a missing column, a wrong type of a whole column): the run "
        "stops before any write; the table names each offending value.",
    )


def schema_result(asset: str, schema: type[pa.DataFrameModel], frame: pd.DataFrame) -> dg.AssetCheckResult:
    """Validate lazily (every failure at once) and report it as the asset's schema check."""
    return failure_result(
        validation_failures(schema, frame),
        check_name=schema_check_name(asset),
        asset=asset,
        severity=ERROR,
        what="schema violations",
    )
