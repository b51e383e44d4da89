"""Halo's saved reports the sync reads through: their SQL and the name each is saved under.

Each SQL aliases Halo's table columns to the record names `HaloClient` gives every read (see
`halo.py`), so a report row and a normalised REST record look the same.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

REPORT_NAME_PREFIX = "halo-sync-pipeline"


def companies_report_sql() -> str:
    # The main site is the company's invoice site (Halo has no separate "main site" column).
    return (
        "SELECT AREA.Aarea AS id, AREA.aareadesc AS name, AREA.AWebsite AS website, AREA.AIsInactive AS inactive, "
        "(SELECT MIN(SITE.ssitenum) FROM SITE WHERE SITE.sarea = AREA.Aarea AND SITE.SIsInvoiceSite = 1) AS main_site_id "
        "FROM AREA ORDER BY AREA.Aarea"
    )


def contacts_report_sql(keep_active_field: str) -> str:
    if not keep_active_field.isidentifier():
        raise ValueError(f"keep-active field {keep_active_field!r} is not a valid Halo custom field column name")
    return (
        "SELECT USERS.uid AS id, SITE.sarea AS client_id, USERS.Usite AS site_id, USERS.uusername AS name, "
        "USERS.uFirstName AS firstname, USERS.uLastName AS surname, USERS.uemail AS emailaddress, "
        "USERS.uemail2 AS email2, USERS.uemail3 AS email3, USERS.uextn AS phonenumber, USERS.umobile AS mobilenumber, "
        "USERS.utitle AS title, USERS.UAzureOID AS azureoid, USERS.uinactive AS inactive, "
        f"USERS.{keep_active_field} AS keep_active "
        "FROM USERS JOIN SITE ON SITE.ssitenum = USERS.Usite ORDER BY USERS.uid"
    )


def sites_report_sql() -> str:
    return (
        "SELECT SITE.ssitenum AS id, SITE.sarea AS client_id, SITE.sdesc AS name, "
        "(SELECT MIN(ADDRESSSTORE.ASLine1) FROM ADDRESSSTORE WHERE ADDRESSSTORE.ASSiteID = SITE.ssitenum) AS line1, "
        "SITE.SIsInvoiceSite AS is_main FROM SITE ORDER BY SITE.ssitenum"
    )


@dataclass(frozen=True)
class SavedReport:
    """A saved Halo report: found by its name, created with its SQL when missing.

    The name carries a hash of the SQL, so changing the SQL (or the keep-active field) makes a new
    report instead of silently reading an old one.
    """

    purpose: str
    sql: str

    @property
    def name(self) -> str:
        digest = hashlib.sha256(self.sql.encode()).hexdigest()[:8]
        return f"{REPORT_NAME_PREFIX} {self.purpose} {digest}"
