"""Metadata every materialisation and check carries, so the UI answers questions without a notebook."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
import pandas as pd

OWNER = "team:msp-integrations"
PREVIEW_ROWS = 10


def column_schema(frame: pd.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name=str(c), type=str(t)) for c, t in frame.dtypes.items()])


def _cell_text(value: Any) -> str:
    return "" if value is None or (not isinstance(value, (list, dict)) and pd.isna(value)) else str(value)


def markdown_table(frame: pd.DataFrame, max_rows: int = PREVIEW_ROWS) -> str:
    """A markdown table (no tabulate dependency); cells are escaped and never cut: the UI wraps them."""
    if frame.empty:
        return "_(no rows)_"
    shown = frame.head(max_rows)

    def cell(value: Any) -> str:
        return _cell_text(value).replace("|", "\\|").replace("\r", " ").replace("\n", " ")

    lines = ["| " + " | ".join(str(c) for c in shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    if len(frame) > max_rows:
        lines.append(f"\n_{len(frame) - max_rows} more rows_")
    return "\n".join(lines)


def with_tenant_names(frame: pd.DataFrame, tenant_names: Mapping[str, Any] | pd.Series | None) -> pd.DataFrame:
    """`frame` with a `tenant_name` column right after `tenant_id` (for previews: a GUID alone says nothing)."""
    if tenant_names is None or "tenant_id" not in frame or "tenant_name" in frame:
        return frame
    named = frame.copy()
    named.insert(
        frame.columns.get_loc("tenant_id") + 1, "tenant_name", frame["tenant_id"].map(tenant_names).astype("string")
    )
    return named


def frame_metadata(
    frame: pd.DataFrame,
    extra: Mapping[str, Any] | None = None,
    tenant_names: Mapping[str, Any] | pd.Series | None = None,
) -> dict[str, Any]:
    preview = with_tenant_names(frame.head(PREVIEW_ROWS), tenant_names)
    metadata: dict[str, Any] = {
        "dagster/row_count": len(frame),
        "dagster/column_schema": column_schema(frame),
        "preview": dg.MetadataValue.md(markdown_table(preview)),
    }
    metadata.update(extra or {})
    return metadata


def _table_value(value: Any) -> str | int | float | bool | None:
    if value is None or (not isinstance(value, (list, dict)) and pd.isna(value)):
        return None
    if isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):  # numpy scalars
        scalar: str | int | float | bool = value.item()
        return scalar
    return str(value)


def table_metadata(frame: pd.DataFrame, descriptions: Mapping[str, str] | None = None) -> dg.MetadataValue:
    """The whole frame as a Dagster table (the UI shows every row and wraps cell text; nothing is cut)."""
    descriptions = descriptions or {}
    types = {"bool": "bool", "int64": "int", "Int64": "int", "float64": "float"}
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn(name=str(c), type=types.get(str(t), "string"), description=descriptions.get(str(c)))
            for c, t in frame.dtypes.items()
        ]
    )
    records = [
        dg.TableRecord({str(c): _table_value(v) for c, v in zip(frame.columns, row)})
        for row in frame.itertuples(index=False)
    ]
    return dg.MetadataValue.table(records=records, schema=schema)


def counts_markdown(series: pd.Series, title: str) -> dg.MetadataValue:
    counts = series.fillna("(none)").value_counts().rename_axis(title).reset_index(name="count")
    return dg.MetadataValue.md(markdown_table(counts, max_rows=50))


def request_metadata(request_counts: Mapping[str, int]) -> dict[str, Any]:
    return {
        "requests": sum(request_counts.values()),
        "requests_by_endpoint": dg.MetadataValue.json(dict(request_counts)),
    }
