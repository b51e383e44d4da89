"""What every pandera model of the pipeline shares, and the column contracts derived from the models.

The models are the one definition of each frame: its columns (in order), their dtypes and their checks.
Frame builders and rules take column lists and dtypes from here instead of keeping their own copies.
"""

from __future__ import annotations

from functools import cache
from typing import Any, TypeAlias

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

# The column kind most fields share, named once: NA-backed text (`StrictModel` checks the NA backing).
Text: TypeAlias = Series[pd.StringDtype]


def nullable(**checks: Any) -> Any:
    """A field that may hold NA (pandera's fields may not by default), with any further `pa.Field` checks."""
    return pa.Field(nullable=True, **checks)


def is_nullable_string(series: pd.Series) -> bool:
    # pandas 3's NaN-backed `str` dtype passes a StringDtype annotation; the contract wants NA-backed `string`.
    return isinstance(series.dtype, pd.StringDtype) and series.dtype.na_value is pd.NA


@cache
def columns(model: type[pa.DataFrameModel]) -> tuple[str, ...]:
    """The model's columns, in the contract's order."""
    return tuple(model.to_schema().columns)


@cache
def dtypes(model: type[pa.DataFrameModel]) -> dict[str, str]:
    """column -> pandas dtype name (`string`, `int64`, `Int64`, `bool`, …), for building the frame."""
    names = {}
    for name, column in model.to_schema().columns.items():
        dtype = str(column.dtype)
        names[name] = "string" if dtype.startswith("string") else dtype
    return names


def string_columns(model: type[pa.DataFrameModel]) -> list[str]:
    return [name for name, dtype in dtypes(model).items() if dtype == "string"]


class StrictModel(pa.DataFrameModel):
    """Strict and never coercing: a producer with wrong columns or dtypes fails instead of being repaired."""

    class Config:
        strict = True
        coerce = False

    @pa.check(".*", regex=True, name="nullable_string_dtype")
    def _text_is_na_backed(cls, series: pd.Series) -> bool:
        """Every text column of the model is the NA-backed `string` dtype (checked per column, so a failure
        names it; shared here instead of listed in every model)."""
        # pandera calls this with the model class; its decorator hides that from mypy.
        return series.name not in string_columns(cls) or is_nullable_string(series)  # type: ignore[arg-type]
