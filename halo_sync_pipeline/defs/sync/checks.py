"""The plan's checks, declared on their assets and evaluated inside the assets' steps.

Blocking ones (schema, integrity) stop the apply in the same run; the review and held warnings list what
needs a person. Each description says what to do about a failure.
"""

import dagster as dg
import pandas as pd

from halo_sync_pipeline.defs.checks import ERROR, WARN, failure_result, tenant_names_of
from halo_sync_pipeline.rules import plan_checks
from halo_sync_pipeline.settings import SyncSettings

MAPPINGS_INTEGRITY = dg.AssetCheckSpec(
    name="company_mappings_integrity",
    asset="company_mappings",
    blocking=True,
    description="Exactly one row per customer tenant, every mapped company exists in Halo and is active, and "
    "every tenant-id write-back is valid, aimed at its company and the only one to it. A failure means a bug in the rules, not bad "
    "data: nothing is written; report it with the failure table.",
)
MAPPINGS_REVIEW = dg.AssetCheckSpec(
    name="company_mappings_review",
    asset="company_mappings",
    blocking=False,
    description="Tenants nothing is written for because they are unmatched (no candidate, ambiguous, mapped to an "
    "inactive or quarantined company) or conflict with another tenant over a company, each with the method and the "
    "full evidence. What to do: fix it at the source, in Halo: map the tenant to its company (the customer's Azure "
    "AD mapping of the Microsoft integration), reactivate the company, or correct its name or website; or exclude "
    "the tenant. Warning only: the other tenants sync.",
)
CHANGES_INTEGRITY = dg.AssetCheckSpec(
    name="contact_changes_integrity",
    asset="contact_changes",
    blocking=True,
    description="No two creates for one (company, email); no create giving a second active contact an azureoid; "
    "no deactivation of a keep-active contact; no action for failed, unmatched or conflicting tenants; no contact "
    "acted on twice unless held; every write body valid against Halo's schema with no field Halo would drop. A "
    "failure means a bug in the rules, not bad data: nothing is written; report it with the failure table.",
)
CHANGES_HELD = dg.AssetCheckSpec(
    name="contact_changes_held",
    asset="contact_changes",
    blocking=False,
    description="Held contact actions per tenant, with why each is held and what releases it: the mass-deactivation "
    "guard (with its numbers; add the tenant to allow_mass_deactivation), no usable site (add one in Halo), "
    "ambiguous addresses (the contact ids; give the right contact the azureoid in Halo), a quarantined contact "
    "(fix the record), a moved person (the contact and company already carrying the azureoid), deactivation "
    "switched off. Held actions are never written; warning only: the rest applies.",
)


# What a failing result says: what the failures are, and what to do (the integrity checks' descriptions say it).
_FAILURE_TEXT: dict[str, tuple[str, str | None]] = {
    MAPPINGS_INTEGRITY.name: ("mapping integrity problems: nothing is written", None),
    MAPPINGS_REVIEW.name: (
        "tenants unmatched or in conflict: nothing is written for them",
        "Map each tenant to its company in Halo (rule 1 then wins), reactivate or fix the company, or exclude the "
        "tenant; then re-run halo_sync_plan and look at tenant_review.",
    ),
    CHANGES_INTEGRITY.name: ("contact plan problems: nothing is written", None),
    CHANGES_HELD.name: (
        "held contact actions (never written)",
        "Read each hold reason: it says what releases the action. Fix in Halo or in sync_settings, then re-run "
        "halo_sync_plan.",
    ),
}


def _result(
    spec: dg.AssetCheckSpec, failures: pd.DataFrame, tenant_names: pd.Series | None = None
) -> dg.AssetCheckResult:
    """A blocking check fails as an error, a warning check as a warning."""
    what, what_to_do = _FAILURE_TEXT[spec.name]
    severity = ERROR if spec.blocking else WARN
    return failure_result(
        failures, check_name=spec.name, severity=severity, what=what, what_to_do=what_to_do, tenant_names=tenant_names
    )


def mapping_results(
    company_mappings: pd.DataFrame, m365_tenants: pd.DataFrame, halo_companies: pd.DataFrame
) -> list[dg.AssetCheckResult]:
    problems = plan_checks.company_mapping_problems(company_mappings, m365_tenants, halo_companies)
    return [
        _result(MAPPINGS_INTEGRITY, problems, tenant_names_of(company_mappings)),
        _result(MAPPINGS_REVIEW, plan_checks.company_mapping_warnings(company_mappings)),
    ]


def change_results(
    contact_changes: pd.DataFrame, company_mappings: pd.DataFrame, halo_contacts: pd.DataFrame, settings: SyncSettings
) -> list[dg.AssetCheckResult]:
    problems = plan_checks.contact_change_problems(contact_changes, company_mappings, halo_contacts, settings)
    return [
        _result(CHANGES_INTEGRITY, problems, tenant_names_of(company_mappings)),
        _result(CHANGES_HELD, plan_checks.contact_change_warnings(contact_changes)),
    ]
