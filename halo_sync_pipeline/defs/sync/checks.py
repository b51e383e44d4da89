"""Checks between the plan's stages. Blocking ones stop the apply in the same run."""

import dagster as dg
import pandas as pd

from halo_sync_pipeline.defs.checks import failure_result, rule_check, schema_check, tenant_names_of
from halo_sync_pipeline.defs.resources import SyncSettingsResource
from halo_sync_pipeline.rules import plan_checks
from halo_sync_pipeline.schemas import plan

ERROR, WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN


@dg.asset_check(
    asset="company_mappings",
    blocking=True,
    additional_ins={"m365_tenants": dg.AssetIn("m365_tenants"), "halo_companies": dg.AssetIn("halo_companies")},
    description="Exactly one row per customer tenant, every mapped company exists in Halo and is active, and "
    "every tenant-id write-back is valid and aimed at its company. A failure means a bug in the rules, not bad "
    "data: nothing is written; report it with the failure table.",
)
def company_mappings_integrity(
    company_mappings: pd.DataFrame, m365_tenants: pd.DataFrame, halo_companies: pd.DataFrame
) -> dg.AssetCheckResult:
    problems = plan_checks.company_mapping_problems(company_mappings, m365_tenants, halo_companies)
    return failure_result(
        problems, severity=ERROR, what="mapping integrity problems: nothing is written",
        tenant_names=tenant_names_of(company_mappings),
    )


@dg.asset_check(
    asset="contact_changes",
    blocking=True,
    additional_ins={"company_mappings": dg.AssetIn("company_mappings"), "halo_contacts": dg.AssetIn("halo_contacts")},
    description="No two creates for one (company, email); no create giving a second active contact an azureoid; "
    "no deactivation of a keep-active contact; no action for failed, unmatched or conflicting tenants; no contact "
    "acted on twice unless held; every write body valid against Halo's schema with no field Halo would drop. A "
    "failure means a bug in the rules, not bad data: nothing is written; report it with the failure table.",
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
    return failure_result(
        problems, severity=ERROR, what="contact plan problems: nothing is written",
        tenant_names=tenant_names_of(company_mappings),
    )


sync_checks = [
    schema_check(dg.AssetKey("company_mappings"), plan.CompanyMappingsSchema),
    company_mappings_integrity,
    rule_check(
        "company_mappings",
        "company_mappings_review",
        "Tenants nothing is written for because they are unmatched (no candidate, ambiguous, mapped to an inactive "
        "or quarantined company) or conflict with another tenant over a company, each with the method and the full "
        "evidence. What to do: fix it at the source, in Halo: map the tenant to its company (the customer's Azure AD "
        "mapping of the Microsoft integration), reactivate the company, or correct its name or website; or exclude "
        "the tenant. Warning only: the other tenants sync.",
        plan_checks.company_mapping_warnings,
        blocking=False,
        what="tenants unmatched or in conflict: nothing is written for them",
        what_to_do="Map each tenant to its company in Halo (rule 1 then wins), reactivate or fix the company, or "
        "exclude the tenant; then re-run halo_sync_plan and look at tenant_review.",
    ),
    schema_check(dg.AssetKey("contact_changes"), plan.ContactChangesSchema),
    contact_changes_integrity,
    rule_check(
        "contact_changes",
        "contact_changes_held",
        "Held contact actions per tenant, with why each is held and what releases it: the mass-deactivation guard "
        "(with its numbers; add the tenant to allow_mass_deactivation), no usable site (add one in Halo), "
        "ambiguous addresses (the contact ids; give the right contact the azureoid in Halo), a quarantined contact "
        "(fix the record), a moved person (the contact and company already carrying the azureoid), deactivation "
        "switched off. Held actions are never written; warning only: the rest applies.",
        plan_checks.contact_change_warnings,
        blocking=False,
        what="held contact actions (never written)",
        what_to_do="Read each hold reason: it says what releases the action. Fix in Halo or in sync_settings, then "
        "re-run halo_sync_plan.",
    ),
    schema_check(dg.AssetKey("inactive_report"), plan.InactiveReportSchema),
    schema_check(dg.AssetKey("tenant_review"), plan.TenantReviewSchema),
]
