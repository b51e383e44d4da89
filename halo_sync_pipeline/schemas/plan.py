"""pandera models of the plan frames built by `halo_sync_pipeline.rules` (docs/architecture.md).

Strict and never coercing: a rule that returns the wrong columns or dtypes fails validation
instead of being silently repaired.
"""

from __future__ import annotations

from enum import StrEnum

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from halo_sync_pipeline.schemas.common import StrictModel, Text, columns, nullable

MAPPING_METHODS = (
    "tenant_id",
    "name",
    "default_domain_website",
    "verified_domain_website",
    "contact_email_domain",
    "conflict",
    "unmatched",
    "excluded",
)
MATCHED_METHODS = MAPPING_METHODS[:5]
# Methods whose match is written back to the company's tenant list (rule 1 is already there).
WRITE_BACK_METHODS = MAPPING_METHODS[1:5]
# A tenant whose rule 2–5 match is a company another tenant owns: the row names the company, nothing is written.
CONFLICT_METHOD = "conflict"
# Rows that name a company: the matched ones and the conflicts.
COMPANY_NAMED_METHODS = (*MATCHED_METHODS, CONFLICT_METHOD)
UNMATCHED_REASONS = ("no_candidate", "ambiguous", "mapped_company_inactive", "company_quarantined")
USERS_STATUSES = ("loaded", "failed")


class Action(StrEnum):
    """What a plan row does (the `action` column): one vocabulary for the rules, the checks and the apply."""

    CREATE = "create"
    PAIR = "pair"
    REACTIVATE = "reactivate"
    UPDATE = "update"
    DEACTIVATE = "deactivate"
    AMBIGUOUS = "ambiguous"
    SET_TENANT_ID = "set_tenant_id"  # a company's tenant-id write-back (applied_changes only)


class Outcome(StrEnum):
    """What the apply did with a row (the `outcome` column of applied_changes)."""

    APPLIED = "applied"
    DRY_RUN = "dry_run"
    HELD = "held"
    FAILED = "failed"
    SKIPPED = "skipped"


CONTACT_ACTIONS = tuple(action.value for action in Action if action is not Action.SET_TENANT_ID)
DEACTIVATION_REASONS = ("unlicensed", "disabled", "guest", "gone_from_m365", "no_contact_details")
CONTACT_REASONS = (
    "new_user",
    "no_site",
    "email_matches_upn",
    "azureoid_matches_user",
    "fields_differ",
    "several_contacts_match_upn",
    *DEACTIVATION_REASONS,
)

APPLIED_ACTIONS = tuple(action.value for action in Action)
OUTCOMES = tuple(outcome.value for outcome in Outcome)


class CompanyMappingsSchema(StrictModel):
    """One row per M365 tenant: the Halo company it matched and by which rule, or why none, with the evidence."""

    tenant_id: Text = pa.Field(unique=True)
    tenant_name: Text = nullable()
    default_domain: Text = nullable()
    users_status: Text = pa.Field(isin=USERS_STATUSES)
    method: Text = pa.Field(isin=MAPPING_METHODS)
    reason: Text = nullable(isin=UNMATCHED_REASONS)
    company_id: Series[pd.Int64Dtype] = nullable()
    company_name: Text = nullable()
    candidates: Text = nullable()
    evidence: Text
    company_update: Text = nullable()

    @pa.dataframe_check(name="company_iff_matched")
    def _company_iff_matched(cls, df: pd.DataFrame) -> pd.Series:
        return df["method"].isin(COMPANY_NAMED_METHODS) == df["company_id"].notna()

    @pa.dataframe_check(name="reason_iff_unmatched")
    def _reason_iff_unmatched(cls, df: pd.DataFrame) -> pd.Series:
        return (df["method"] == "unmatched") == df["reason"].notna()

    @pa.dataframe_check(name="company_update_only_for_write_back_methods")
    def _update_only_for_write_back(cls, df: pd.DataFrame) -> pd.Series:
        return df["company_update"].isna() | df["method"].isin(WRITE_BACK_METHODS)


class ContactChangesSchema(StrictModel):
    """One row per planned contact action, held ones included, with the body to send (none when ambiguous)."""

    tenant_id: Text
    tenant_name: Text = nullable()
    company_id: Series[int]
    company_name: Text = nullable()
    contact_id: Series[pd.Int64Dtype] = nullable()
    user_id: Text = nullable()
    action: Text = pa.Field(isin=CONTACT_ACTIONS)
    held: Series[bool]
    reason: Text = pa.Field(isin=CONTACT_REASONS)
    # Why a held action is held, with its numbers, and what releases it (NA iff not held).
    hold_reason: Text = nullable()
    name: Text = nullable()
    email: Text = nullable()
    phonenumber: Text = nullable()
    mobilenumber: Text = nullable()
    body: Text = nullable()
    evidence: Text

    @pa.dataframe_check(name="hold_reason_iff_held")
    def _hold_reason(cls, df: pd.DataFrame) -> pd.Series:
        return df["held"] == df["hold_reason"].notna()

    @pa.dataframe_check(name="ambiguous_is_held_without_body")
    def _ambiguous_held(cls, df: pd.DataFrame) -> pd.Series:
        ambiguous = df["action"] == Action.AMBIGUOUS
        return ~ambiguous | (df["held"] & df["body"].isna())

    @pa.dataframe_check(name="body_unless_ambiguous")
    def _body_present(cls, df: pd.DataFrame) -> pd.Series:
        return (df["action"] == Action.AMBIGUOUS) | df["body"].notna()

    @pa.dataframe_check(name="contact_id_unless_create")
    def _contact_id(cls, df: pd.DataFrame) -> pd.Series:
        return (df["action"] == Action.CREATE) == df["contact_id"].isna()


class AppliedChangesSchema(ContactChangesSchema):
    """The plan's rows plus one per company write-back, each with what the apply did."""

    action: Text = pa.Field(isin=APPLIED_ACTIONS)
    # Company write-backs (`set_tenant_id`) carry no contact-level reason.
    reason: Text = nullable(isin=CONTACT_REASONS)
    outcome: Text = pa.Field(isin=OUTCOMES)
    error: Text = nullable()
    halo_id: Series[pd.Int64Dtype] = nullable()

    @pa.dataframe_check(name="contact_id_unless_create")
    def _contact_id(cls, df: pd.DataFrame) -> pd.Series:
        no_contact = df["action"].isin([Action.CREATE, Action.SET_TENANT_ID])
        return no_contact == df["contact_id"].isna()


class InactiveReportSchema(StrictModel):
    """One row per planned deactivation: the seed's CSV columns, then Reason, Tenant and the hold."""

    Company: Text = nullable()
    Name: Text = nullable()
    Email: Text = nullable()
    Mobile: Text = nullable()
    Phone: Text = nullable()
    Reason: Text = pa.Field(isin=DEACTIVATION_REASONS)
    Tenant: Text = nullable()
    Held: Text = pa.Field(isin=("yes", ""))
    HoldReason: Text = nullable(alias="Hold reason")

    @pa.dataframe_check(name="hold_reason_iff_held")
    def _hold_reason(cls, df: pd.DataFrame) -> pd.Series:
        return (df["Held"] == "yes") == df["Hold reason"].notna()


class TenantReviewSchema(StrictModel):
    """One row per tenant for the UI's review table, problems first."""

    tenant_name: Text = nullable()
    warnings: Text = nullable()
    evidence: Text
    hold_reasons: Text = nullable()
    method: Text = pa.Field(isin=MAPPING_METHODS)
    reason: Text = nullable(isin=UNMATCHED_REASONS)
    company_name: Text = nullable()
    candidates: Text = nullable()
    write_back: Text = nullable()
    held: Series[int] = pa.Field(ge=0)
    creates: Series[int] = pa.Field(ge=0)
    pairs: Series[int] = pa.Field(ge=0)
    reactivates: Series[int] = pa.Field(ge=0)
    updates: Series[int] = pa.Field(ge=0)
    deactivates: Series[int] = pa.Field(ge=0)
    ambiguous: Series[int] = pa.Field(ge=0)
    load_status: Text = pa.Field(isin=USERS_STATUSES)
    load_error: Text = nullable()
    needs_review: Series[bool]
    company_id: Series[pd.Int64Dtype] = nullable()
    tenant_id: Text = pa.Field(unique=True)

    @pa.dataframe_check(name="needs_review_iff_warnings")
    def _needs_review(cls, df: pd.DataFrame) -> pd.Series:
        return df["needs_review"] == df["warnings"].notna()

    @pa.dataframe_check(name="problems_first")
    def _problems_first(cls, df: pd.DataFrame) -> bool:
        return bool(df["needs_review"].is_monotonic_decreasing)


# The plan frames' columns, in order, read from their models (the one definition).
COMPANY_MAPPING_COLUMNS = list(columns(CompanyMappingsSchema))
CONTACT_CHANGE_COLUMNS = list(columns(ContactChangesSchema))
APPLIED_CHANGE_COLUMNS = list(columns(AppliedChangesSchema))
TENANT_REVIEW_COLUMNS = list(columns(TenantReviewSchema))
