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


def markdown_table(frame: pd.DataFrame, max_rows: int = PREVIEW_ROWS) -> str:
    """A small markdown table (no tabulate dependency); cells are escaped and shortened."""
    if frame.empty:
        return "_(no rows)_"
    shown = frame.head(max_rows)

    def cell(value: Any) -> str:
        text = "" if value is None or (not isinstance(value, (list, dict)) and pd.isna(value)) else str(value)
        text = text.replace("|", "\\|").replace("\n", " ")
        return text if len(text) <= 80 else text[:77] + "..."

    lines = ["| " + " | ".join(str(c) for c in shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    if len(frame) > max_rows:
        lines.append(f"\n_{len(frame) - max_rows} more rows_")
    return "\n".join(lines)


def frame_metadata(frame: pd.DataFrame, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "dagster/row_count": len(frame),
        "dagster/column_schema": column_schema(frame),
        "preview": dg.MetadataValue.md(markdown_table(frame)),
    }
    metadata.update(extra or {})
    return metadata


def counts_markdown(series: pd.Series, title: str) -> dg.MetadataValue:
    counts = series.fillna("(none)").value_counts().rename_axis(title).reset_index(name="count")
    return dg.MetadataValue.md(markdown_table(counts, max_rows=50))


def request_metadata(request_counts: Mapping[str, int]) -> dict[str, Any]:
    return {"requests": sum(request_counts.values()), "requests_by_endpoint": dg.MetadataValue.json(dict(request_counts))}
