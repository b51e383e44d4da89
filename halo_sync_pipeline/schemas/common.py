"""What every pandera model of the pipeline shares."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa


def is_nullable_string(series: pd.Series) -> bool:
    # pandas 3's NaN-backed `str` dtype passes a StringDtype annotation; the contract wants NA-backed `string`.
    return isinstance(series.dtype, pd.StringDtype) and series.dtype.na_value is pd.NA


class StrictModel(pa.DataFrameModel):
    """Strict and never coercing: a producer with wrong columns or dtypes fails instead of being repaired."""

    class Config:
        strict = True
        coerce = False
