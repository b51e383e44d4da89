"""A one-tenant estate for contact-rule tests: tenant t1 ↔ company 1 (Contoso), verified contoso.com."""

from __future__ import annotations

import pandas as pd

from halo_sync_pipeline.rules.contacts import plan_contact_changes
from halo_sync_pipeline.schemas.plan import ContactChangesSchema
from halo_sync_pipeline.settings import SyncSettings
from tests.rules import frames as f


def mappings(method: str = "name", users_status: str = "loaded", company_id: int | None = 1) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "tenant_id": ["t1"],
            "tenant_name": ["Contoso"],
            "default_domain": ["contoso.com"],
            "users_status": [users_status],
            "method": [method],
            "reason": ["no_candidate" if method == "unmatched" else None],
            "company_id": pd.array([company_id], dtype="Int64"),
            "company_name": ["Contoso" if company_id else None],
            "candidates": [None],
            "evidence": ["test"],
            "company_update": [None],
        }
    ).astype(
        {
            c: "string"
            for c in [
                "tenant_id",
                "tenant_name",
                "default_domain",
                "users_status",
                "method",
                "reason",
                "company_name",
                "candidates",
                "evidence",
                "company_update",
            ]
        }
    )


def user(user_id: str, local: str, **fields) -> dict:
    return {
        "tenant_id": "t1",
        "user_id": user_id,
        "upn": f"{local}@contoso.com",
        "display_name": local.title(),
        **fields,
    }


def contact(contact_id: int, **fields) -> dict:
    return {"contact_id": contact_id, "company_id": 1, **fields}


DOMAINS = f.domains({"tenant_id": "t1", "domain": "contoso.com", "is_default": True})
MAIN_SITE = f.sites({"site_id": 10, "company_id": 1, "name": "HQ", "line1": "1 Main St", "is_main": True})


def plan(
    users: list[dict],
    contacts: list[dict],
    settings: SyncSettings = SyncSettings(),
    sites=MAIN_SITE,
    company_mappings: pd.DataFrame | None = None,
) -> pd.DataFrame:
    changes = plan_contact_changes(
        company_mappings if company_mappings is not None else mappings(),
        f.users(*users),
        DOMAINS,
        f.contacts(*contacts),
        sites,
        settings,
    )
    ContactChangesSchema.validate(changes, lazy=True)
    return changes


def actions(changes: pd.DataFrame) -> list[tuple]:
    """(action, contact_id or user_id, reason, held) per row, sorted."""
    return sorted(
        (a, int(c) if pd.notna(c) else u, r, bool(h))
        for a, c, u, r, h in zip(
            changes["action"], changes["contact_id"], changes["user_id"], changes["reason"], changes["held"]
        )
    )
