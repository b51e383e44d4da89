"""The inactive-contacts report: the seed's CSV (Company, Name, Email, Mobile, Phone) plus Reason, Tenant,
Held and Hold reason. Held deactivations (the guard, `deactivate_contacts` off) are listed too: they are
the ones to review, and with deactivation off the report is the seed's review list."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from halo_sync_pipeline.schemas.plan import Action

REPORT_COLUMNS = {
    "Company": "company_name",
    "Name": "name",
    "Email": "email",
    "Mobile": "mobilenumber",
    "Phone": "phonenumber",
    "Reason": "reason",
    "Tenant": "tenant_name",
    "Held": "held",
    "Hold reason": "hold_reason",
}
# A spreadsheet reads a cell starting with one of these as a formula (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inactive_report(changes: pd.DataFrame) -> pd.DataFrame:
    """One row per planned deactivation, in the report's columns; `Held` is "yes" where it is held back
    (not applied; `Hold reason` says why), else empty."""
    deactivations = changes.loc[changes["action"] == Action.DEACTIVATE]
    report = deactivations[list(REPORT_COLUMNS.values())].set_axis(list(REPORT_COLUMNS), axis=1)
    report = report.assign(Held=report["Held"].map({True: "yes", False: ""}))
    return report.astype("string").sort_values(["Tenant", "Company", "Name"], ignore_index=True)


def neutralise_spreadsheet_cell(value: object) -> str:
    """The cell as text, with a leading `'` when a spreadsheet would read it as a formula."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return ""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def write_csv(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write `frame` as UTF-8 CSV with neutralised cells, atomically (a temp file in the same
    folder, then os.replace): a crash leaves the old file or the new one, never half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    safe = frame.map(neutralise_spreadsheet_cell)
    handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as temp:
            safe.to_csv(temp, index=False)
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return target


# The inactive report is the seed's CSV; the plan exports are the same kind of file.
write_inactive_report = write_csv
