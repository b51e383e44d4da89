"""Checks on the source frames (what was read), as pure functions for the Dagster asset checks to call.

The plan's checks are in plan_checks.py; odd Halo records are quarantined by quarantine.py.
"""

from __future__ import annotations

import pandas as pd


def tenant_load_failures(m365_tenants: pd.DataFrame) -> pd.DataFrame:
    """Tenants whose directory could not be read (one row each: tenant, check, detail).

    Nothing is planned for them, so they are listed for review; when every tenant failed, the
    cause is almost surely systemic (credentials, consent, a bug) rather than per tenant.
    """
    failed = m365_tenants.loc[m365_tenants["status"] == "failed"]
    return pd.DataFrame(
        {
            "tenant_id": failed["tenant_id"],
            "tenant_name": failed["display_name"],
            "check": "tenant_failed_to_load",
            "detail": failed["error"],
        }
    ).reset_index(drop=True)
