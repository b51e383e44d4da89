"""Checks between the plan's stages. Blocking ones stop the apply in the same run."""

import dagster as dg
import pandas as pd

from halo_sync_pipeline.defs.checks import failure_result, rule_check, schema_check
from halo_sync_pipeline.defs.resources import SyncSettingsResource
from halo_sync_pipeline.rules import plan_checks
from halo_sync_pipeline.schemas import plan

ERROR, WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN


@dg.asset_check(
    asset="company_mappings",
    blocking=True,
    additional_ins={"m365_tenants": dg.AssetIn("m365_tenants"), "halo_companies": dg.AssetIn("halo_companies")},
    description="Exactly one row per customer tenant, and every mapped company exists in Halo and is active.",
)
def company_mappings_integrity(
    company_mappings: pd.DataFrame, m365_tenants: pd.DataFrame, halo_companies: pd.DataFrame
) -> dg.AssetCheckResult:
    problems = plan_checks.company_mapping_problems(company_mappings, m365_tenants, halo_companies)
    return failure_result(problems, severity=ERROR, what="mapping integrity problems")


@dg.asset_check(
    asset="contact_changes",
    blocking=True,
    additional_ins={"company_mappings": dg.AssetIn("company_mappings"), "halo_contacts": dg.AssetIn("halo_contacts")},
    description="No two creates for one (company, email); no action on keep-active contacts; no action for failed "
    "or unmatched tenants; every write body valid against Halo's schema with no field Halo would drop.",
)
def contact_changes_integrity(
    contact_changes: pd.DataFrame,
    company_mappings: pd.DataFrame,
    halo_contacts: pd.DataFrame,
    sync_settings: SyncSettingsResource,
) -> dg.AssetCheckResult:
    problems = plan_checks.contact_change_problems(
        contact_changes, company_mappings, halo_contacts, sync_settings.settings()
    )
    return failure_result(problems, severity=ERROR, what="contact plan problems")


sync_checks = [
    schema_check(dg.AssetKey("company_mappings"), plan.CompanyMappingsSchema),
    company_mappings_integrity,
    rule_check(
        "company_mappings",
        "company_mappings_review",
        "Tenants left unmatched or ambiguous, and companies claimed by several tenants (to review, not blocking).",
        plan_checks.company_mapping_warnings,
        blocking=False,
    ),
    schema_check(dg.AssetKey("contact_changes"), plan.ContactChangesSchema),
    contact_changes_integrity,
    rule_check(
        "contact_changes",
        "contact_changes_held",
        "Tenants whose actions are held (mass-deactivation guard, no site) — to review, not blocking.",
        plan_checks.contact_change_warnings,
        blocking=False,
    ),
    schema_check(dg.AssetKey("inactive_report"), plan.InactiveReportSchema),
]
