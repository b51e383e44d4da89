"""The plan: company mappings, contact changes and the inactive-contacts report, computed by the pure rules."""

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pandas as pd

from halo_sync_pipeline.defs.metadata import OWNER, counts_markdown, frame_metadata, markdown_table
from halo_sync_pipeline.defs.resources import SyncSettingsResource
from halo_sync_pipeline.rules.contacts import plan_contact_changes
from halo_sync_pipeline.rules.matching import match_companies
from halo_sync_pipeline.rules.report import inactive_report as build_inactive_report
from halo_sync_pipeline.rules.report import write_inactive_report

SYNC = {"group_name": "sync", "kinds": {"pandas"}, "owners": [OWNER]}


@dg.asset(**SYNC)
def company_mappings(
    m365_tenants: pd.DataFrame,
    m365_domains: pd.DataFrame,
    halo_companies: pd.DataFrame,
    halo_tenant_mappings: pd.DataFrame,
    halo_contacts: pd.DataFrame,
    sync_settings: SyncSettingsResource,
) -> dg.Output[pd.DataFrame]:
    """One row per customer tenant: the Halo company it maps to, by which rule, and the evidence.

    Rules in order (the first yielding exactly one active company wins): Halo tenant mapping, company
    name, website = default domain, website in verified domains, contacts' email domains; else unmatched
    (no candidate, or ambiguous with the candidates). `company_update` holds the planned tenant-id write-back.
    """
    frame = match_companies(
        m365_tenants, m365_domains, halo_companies, halo_tenant_mappings, halo_contacts, sync_settings.settings()
    )
    problems = frame[frame["method"].isin(["unmatched", "conflict"])]
    return dg.Output(
        frame,
        metadata=frame_metadata(
            frame,
            {
                "by_method": counts_markdown(frame["method"], "method"),
                "unmatched_or_conflict": dg.MetadataValue.md(
                    markdown_table(problems[["tenant_name", "tenant_id", "method", "reason", "candidates", "evidence"]], 50)
                ),
                "company_writes_planned": int(frame["company_update"].notna().sum()),
            },
        ),
    )


@dg.asset(**SYNC)
def contact_changes(
    company_mappings: pd.DataFrame,
    m365_users: pd.DataFrame,
    m365_domains: pd.DataFrame,
    halo_contacts: pd.DataFrame,
    halo_sites: pd.DataFrame,
    halo_companies: pd.DataFrame,
    sync_settings: SyncSettingsResource,
) -> dg.Output[pd.DataFrame]:
    """One row per planned contact action (create, pair, reactivate, update, deactivate, ambiguous).

    Only for matched tenants whose users loaded. Each row has the Halo write body, why it exists
    (`reason`, `evidence`) and, when `held`, why it is held and what releases it (`hold_reason`: no
    site, the mass-deactivation guard, ambiguous addresses, a quarantined contact, a moved person,
    deactivation switched off). Held rows are never written.
    """
    frame = plan_contact_changes(
        company_mappings, m365_users, m365_domains, halo_contacts, halo_sites, sync_settings.settings(),
        companies=halo_companies,
    )
    held = frame[frame["held"]]
    actions = frame["action"] + frame["held"].map({True: " (held)", False: ""})
    return dg.Output(
        frame,
        metadata=frame_metadata(
            frame,
            {
                "by_action": counts_markdown(actions, "action"),
                "by_reason": counts_markdown(frame["action"] + ": " + frame["reason"].fillna(""), "action: reason"),
                "held": dg.MetadataValue.md(
                    markdown_table(held[["tenant_name", "action", "reason", "hold_reason", "name", "email"]], 50)
                ),
            },
        ),
    )


@dg.asset(**SYNC)
def inactive_report(
    context: dg.AssetExecutionContext, contact_changes: pd.DataFrame, sync_settings: SyncSettingsResource
) -> dg.Output[pd.DataFrame]:
    """The seed's CSV of contacts to deactivate (Company, Name, Email, Mobile, Phone) plus Reason, Tenant, Held.

    Written to `report_path` or, by default, to `reports/` inside the Dagster storage folder, one file
    per run; cells that a spreadsheet would run as formulas are neutralised.
    """
    report = build_inactive_report(contact_changes)
    configured = sync_settings.report_path
    if configured:
        path = Path(configured)
    else:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = Path(context.instance.storage_directory()) / "reports" / f"inactive_contacts_{stamp}_{context.run_id[:8]}.csv"
    written = write_inactive_report(report, path)
    return dg.Output(report, metadata=frame_metadata(report, {"report_path": dg.MetadataValue.path(str(written))}))
