"""The sync's settings: the seed script's switches, with its defaults, as one immutable value.

Pure (no Dagster): rules take a `SyncSettings`. It is also the one definition of the settings: the Dagster
resource `SyncSettingsResource` inherits these fields, their defaults, descriptions and checks, so the UI,
a settings file and the rules can never disagree about a name, a default or what a field means.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


def _plan_switch(what: str, *, seed_switch: str, apply_toggle: str, when_off: str = "") -> Any:
    """A plan switch (on by default): whether the plan proposes `what` at all. The apply's own toggle
    can only narrow a run further, never widen it."""
    off = f" Off: {when_off}." if when_off else ""
    return Field(
        default=True,
        description=f"PLAN setting: plan {what} (seed: {seed_switch}).{off} The apply's {apply_toggle} can only "
        "narrow a run further.",
    )


class SyncSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    exclude_tenants: list[str] = Field(
        default=[],
        description="Tenants skipped entirely: display names or tenant ids, case-insensitive (method `excluded`). "
        "Seed: $customerExclude.",
    )
    licensed_users_only: bool = Field(
        default=True, description="Sync only users with an assigned licence (the seed's $licensedUsersOnly)."
    )
    exclude_disabled_accounts: bool = Field(default=True, description="Do not sync users whose account is disabled.")
    exclude_guests: bool = Field(default=True, description="Do not sync guest users (userType Guest).")
    exclude_upn_patterns: list[str] = Field(
        default=["admin"],
        description="Case-insensitive regexes searched in the local part of the UPN (the seed searched the whole "
        "UPN); matching users are never created, paired or reactivated, and their contacts never deactivated.",
    )
    keep_active_field: str = Field(
        default="CFM365SyncKeepActive", description="Halo user custom field that protects a contact from deactivation."
    )
    keep_active_value: str = Field(
        default="2",
        description="The keep-active value; compared trimmed, case-insensitively and numerically when both sides are "
        'numbers ("02" and 2.0 equal "2").',
    )
    general_user_name: str = Field(
        default="General User",
        description="Halo's catch-all contact per company: never deactivated, not counted by the guard.",
    )
    set_halo_tenant_ids: bool = _plan_switch(
        "tenant-id write-backs for companies matched by name, website or contact domains",
        seed_switch="$SetHuduAzureID",
        apply_toggle="allow_tenant_id_writes",
    )
    create_contacts: bool = _plan_switch(
        "creates for new users", seed_switch="$CreateUsers", apply_toggle="allow_creates"
    )
    deactivate_contacts: bool = _plan_switch(
        "deactivations",
        seed_switch="$InactivateUsers",
        apply_toggle="allow_deactivations",
        when_off="would-be deactivations are still listed (held) in the inactive report",
    )
    update_contact_fields: bool = Field(
        default=False,
        description="Plan updates of linked contacts' names and phones (a blank M365 value never overwrites Halo).",
    )
    guard_min_contacts: int = Field(
        default=10,
        ge=0,
        description="Deactivation guard: a tenant's deactivations are held above max(this, guard_fraction × active "
        "contacts).",
    )
    guard_fraction: float = Field(
        default=0.5, ge=0, le=1, description="Deactivation guard: fraction of the company's active contacts."
    )
    allow_mass_deactivation: list[str] = Field(
        default=[], description="Tenants (names or ids) exempt from the deactivation guard."
    )
    report_path: str | None = Field(
        default=None,
        description="Also write the inactive report to this path; the run's export folder is then created beside it. "
        "Default: reports/ in the Dagster storage folder.",
    )

    @field_validator("exclude_upn_patterns")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"exclude_upn_patterns: {pattern!r} is not a valid regex: {exc}") from None
        return patterns
