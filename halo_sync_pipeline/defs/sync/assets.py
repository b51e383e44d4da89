"""The plan: company mappings, contact changes, the tenant review and the inactive-contacts report, computed
by the pure rules; every run that computes the plan also exports it as CSV, one folder per run."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from halo_sync_pipeline.defs.checks import WARN, failure_result, schema_result, schema_spec
from halo_sync_pipeline.defs.heap import inherited_objects_frozen
from halo_sync_pipeline.defs.metadata import OWNER, counts_markdown, frame_metadata, markdown_table, table_metadata
from halo_sync_pipeline.defs.resources import SyncSettingsResource
from halo_sync_pipeline.defs.sync.checks import (
    CHANGES_HELD,
    CHANGES_INTEGRITY,
    MAPPINGS_INTEGRITY,
    MAPPINGS_REVIEW,
    change_results,
    mapping_results,
)
from halo_sync_pipeline.rules.contacts import plan_contact_changes
from halo_sync_pipeline.rules.matching import match_companies
from halo_sync_pipeline.rules.quarantine import quarantined_records
from halo_sync_pipeline.rules.report import inactive_report as build_inactive_report
from halo_sync_pipeline.rules.report import write_csv
from halo_sync_pipeline.rules.review import review_stories, review_summary
from halo_sync_pipeline.rules.review import tenant_review as build_tenant_review
from halo_sync_pipeline.schemas import plan

SYNC: dict[str, Any] = {"group_name": "sync", "kinds": {"pandas"}, "owners": [OWNER]}
# The whole table goes into the UI up to this many tenants; beyond, the problems first (the CSV has all).
REVIEW_TABLE_ROWS = 1000
# Paragraphs of the tenants needing review, above the table (the table is wider than the page).
REVIEW_STORIES = 200
REVIEW_COLUMN_DESCRIPTIONS = {
    "needs_review": "true when the tenant failed to load, conflicts, is unmatched or has held actions",
    "warnings": "what needs a person, and that nothing is written where that is so",
    "method": "the matching rule that decided (tenant_id, name, default_domain_website, verified_domain_website, "
    "contact_email_domain), or conflict / unmatched / excluded",
    "evidence": "why: what the rule compared, in full",
    "candidates": "the companies of an ambiguous rule, or the tenants a conflict is with",
    "write_back": "the tenant-id write-back the apply will make",
    "held": "planned contact actions that are held (never written)",
    "hold_reasons": "per action and reason: why held, with numbers, and what releases it",
}


def plan_export_folder(context: dg.AssetExecutionContext, settings: SyncSettingsResource) -> Path:
    """This run's folder of plan exports: `<reports>/<run start, UTC>_<run id>`, where `<reports>` is the
    folder of `report_path` when set, else `reports/` in the Dagster storage folder. Every step of the
    run finds the same folder (it is named after the run's creation time, not the step's)."""
    record = context.instance.get_run_record_by_id(context.run_id)
    created = record.create_timestamp if record is not None else datetime.now(UTC)
    stamp = created.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = (
        Path(settings.report_path).parent
        if settings.report_path
        else Path(context.instance.storage_directory()) / "reports"
    )
    return base / f"{stamp}_{context.run_id[:8]}"


def _export(
    context: dg.AssetExecutionContext, settings: SyncSettingsResource, frame: pd.DataFrame, name: str
) -> dict[str, Any]:
    folder = plan_export_folder(context, settings)
    written = write_csv(frame, folder / f"{name}.csv")
    return {"export_folder": dg.MetadataValue.path(str(folder)), "export_csv": dg.MetadataValue.path(str(written))}


@dg.asset(
    **SYNC,
    check_specs=[schema_spec("company_mappings", plan.CompanyMappingsSchema), MAPPINGS_INTEGRITY, MAPPINGS_REVIEW],
)
def company_mappings(
    context: dg.AssetExecutionContext,
    m365_tenants: pd.DataFrame,
    m365_domains: pd.DataFrame,
    halo_companies: pd.DataFrame,
    halo_tenant_mappings: pd.DataFrame,
    halo_contacts: pd.DataFrame,
    sync_settings: SyncSettingsResource,
):
    """One row per customer tenant: the Halo company it maps to, by which rule, and the evidence.

    Rules in order (the first yielding exactly one active company wins): Halo tenant mapping, company
    name, website = default domain, website in verified domains, contacts' email domains; else unmatched
    (no candidate, ambiguous, mapped to an inactive company, quarantined company). A company Halo maps to
    another tenant, or that two unmapped tenants reach, is a `conflict`: nothing is written for it.
    `company_update` holds the planned tenant-id write-back. Also exported as company_mappings.csv.
    """
    frame = match_companies(
        m365_tenants, m365_domains, halo_companies, halo_tenant_mappings, halo_contacts, sync_settings.settings()
    )
    problems = frame[frame["method"].isin(["unmatched", "conflict"])]
    yield dg.Output(
        frame,
        metadata=frame_metadata(
            frame,
            {
                "by_method": counts_markdown(frame["method"], "method"),
                "unmatched_or_conflict": dg.MetadataValue.md(
                    markdown_table(
                        problems[["tenant_name", "tenant_id", "method", "reason", "candidates", "evidence"]], 50
                    )
                ),
                "company_writes_planned": int(frame["company_update"].notna().sum()),
                **_export(context, sync_settings, frame, "company_mappings"),
            },
        ),
    )
    yield schema_result("company_mappings", plan.CompanyMappingsSchema, frame)
    yield from mapping_results(frame, m365_tenants, halo_companies)


@dg.asset(
    **SYNC,
    check_specs=[schema_spec("contact_changes", plan.ContactChangesSchema), CHANGES_INTEGRITY, CHANGES_HELD],
)
def contact_changes(
    context: dg.AssetExecutionContext,
    company_mappings: pd.DataFrame,
    m365_users: pd.DataFrame,
    m365_domains: pd.DataFrame,
    halo_contacts: pd.DataFrame,
    halo_sites: pd.DataFrame,
    halo_companies: pd.DataFrame,
    sync_settings: SyncSettingsResource,
):
    """One row per planned contact action (create, pair, reactivate, update, deactivate, ambiguous).

    Only for matched tenants whose users loaded. Each row has the Halo write body, why it exists
    (`reason`, `evidence`) and, when `held`, why it is held and what releases it (`hold_reason`: no
    site, the mass-deactivation guard, ambiguous addresses, a quarantined contact, a moved person,
    deactivation switched off). Held rows are never written. Also exported as contact_changes.csv.
    """
    with inherited_objects_frozen():
        frame = plan_contact_changes(
            company_mappings,
            m365_users,
            m365_domains,
            halo_contacts,
            halo_sites,
            sync_settings.settings(),
            companies=halo_companies,
        )
    held = frame[frame["held"]]
    actions = frame["action"] + frame["held"].map({True: " (held)", False: ""})
    yield dg.Output(
        frame,
        metadata=frame_metadata(
            frame,
            {
                "by_action": counts_markdown(actions, "action"),
                "by_reason": counts_markdown(frame["action"] + ": " + frame["reason"].fillna(""), "action: reason"),
                "held": dg.MetadataValue.md(
                    markdown_table(held[["tenant_name", "action", "reason", "hold_reason", "name", "email"]], 50)
                ),
                **_export(context, sync_settings, frame, "contact_changes"),
            },
        ),
    )
    yield schema_result("contact_changes", plan.ContactChangesSchema, frame)
    yield from change_results(frame, company_mappings, halo_contacts, sync_settings.settings())


QUARANTINED = dg.AssetCheckSpec(
    name="halo_records_quarantined",
    asset="tenant_review",
    blocking=False,
    description="Odd Halo records the sync sets aside instead of stopping: contacts whose azureoid is not a GUID, "
    "tenant mappings to a non-GUID tenant id, companies with several invoice sites, ids listed twice, missing "
    "names. Each row says what is wrong and how the sync treats it; fix the record in Halo to clear it. (On "
    "tenant_review, whose step has all four Halo frames.)",
)


@dg.asset(**SYNC, check_specs=[schema_spec("tenant_review", plan.TenantReviewSchema), QUARANTINED])
def tenant_review(
    context: dg.AssetExecutionContext,
    company_mappings: pd.DataFrame,
    contact_changes: pd.DataFrame,
    m365_tenants: pd.DataFrame,
    halo_companies: pd.DataFrame,
    halo_contacts: pd.DataFrame,
    halo_sites: pd.DataFrame,
    halo_tenant_mappings: pd.DataFrame,
    sync_settings: SyncSettingsResource,
):
    """Each tenant's whole story on one row, problems first: load status and error, the company and the
    rule that matched with its full evidence, candidates, the planned write-back, counts of each action,
    held actions with why they are held and what releases them, and what needs a person.

    Start here when a match or an action looks wrong: `needing_review` tells each problem tenant's story in
    a paragraph, and the `tenants` table has every tenant (up to 1,000; beyond, problems first), untruncated.
    Also exported as tenant_review.csv.
    """
    frame = build_tenant_review(company_mappings, contact_changes, m365_tenants)
    quarantined = quarantined_records(halo_companies, halo_contacts, halo_sites, halo_tenant_mappings)
    shown = frame.head(REVIEW_TABLE_ROWS)
    problems = int(frame["needs_review"].sum())
    yield dg.Output(
        frame,
        metadata={
            "summary": dg.MetadataValue.text(
                f"{problems} of {len(frame)} tenants need review; {len(quarantined)} Halo records quarantined"
                + (
                    f"; the table shows the first {REVIEW_TABLE_ROWS} (problems first), the CSV has all"
                    if len(frame) > len(shown)
                    else ""
                )
            ),
            "needing_review": dg.MetadataValue.md(review_stories(frame, REVIEW_STORIES)),
            "tenants": table_metadata(shown, REVIEW_COLUMN_DESCRIPTIONS),
            "review_summary": dg.MetadataValue.json(review_summary(frame, contact_changes, len(quarantined))),
            "dagster/row_count": len(frame),
            **_export(context, sync_settings, frame, "tenant_review"),
        },
    )
    yield schema_result("tenant_review", plan.TenantReviewSchema, frame)
    yield failure_result(
        quarantined,
        check_name=QUARANTINED.name,
        severity=WARN,
        what="Halo records quarantined",
        what_to_do="Fix each record in Halo (give it a name, a GUID or one invoice site; remove the copy); the "
        "sync leaves it alone until then and every other record syncs.",
    )


@dg.asset(**SYNC, check_specs=[schema_spec("inactive_report", plan.InactiveReportSchema)])
def inactive_report(
    context: dg.AssetExecutionContext, contact_changes: pd.DataFrame, sync_settings: SyncSettingsResource
):
    """The seed's CSV of contacts to deactivate (Company, Name, Email, Mobile, Phone) plus Reason, Tenant, Held
    and Hold reason.

    Written as inactive_contacts.csv into this run's export folder (beside company_mappings.csv,
    contact_changes.csv and tenant_review.csv) and, when `report_path` is set, also to that path; cells that
    a spreadsheet would run as formulas are neutralised.
    """
    report = build_inactive_report(contact_changes)
    exported = _export(context, sync_settings, report, "inactive_contacts")
    written = write_csv(report, sync_settings.report_path) if sync_settings.report_path else exported["export_csv"].path
    yield dg.Output(
        report,
        metadata=frame_metadata(report, {"report_path": dg.MetadataValue.path(str(written)), **exported}),
    )
    yield schema_result("inactive_report", plan.InactiveReportSchema, report)
