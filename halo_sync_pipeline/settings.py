"""The sync's settings: the seed script's switches, with its defaults, as one immutable value.

Pure (no Dagster): rules take a `SyncSettings`; the Dagster layer builds one from run config.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SyncSettings:
    # Tenants skipped entirely (display names or tenant ids, case-insensitive). Seed: $customerExclude
    exclude_tenants: tuple[str, ...] = ()
    # Only users with at least one assigned licence are synced. Seed: $licensedUsersOnly
    licensed_users_only: bool = True
    # Users with accountEnabled=false are not synced (the seed synced them).
    exclude_disabled_accounts: bool = True
    # userType=Guest users are not synced (the seed synced them).
    exclude_guests: bool = True
    # Case-insensitive regexes searched in the local part of the UPN (before '@'). Seed: hard-coded "admin" on the whole UPN
    exclude_upn_patterns: tuple[str, ...] = ("admin",)
    # Halo user custom field that, when equal to keep_active_value, protects a contact from deactivation.
    keep_active_field: str = "CFM365SyncKeepActive"
    keep_active_value: str = "2"
    # Halo's catch-all contact per company; never deactivated. Seed: hard-coded 'General User'
    general_user_name: str = "General User"
    # Write the tenant id back to a company matched by name/website/domains. Seed: $SetHuduAzureID
    set_halo_tenant_ids: bool = True
    create_contacts: bool = True
    # Seed: $InactivateUsers
    deactivate_contacts: bool = True
    # Off in the seed: existing linked contacts are not rewritten.
    update_contact_fields: bool = False
    # Deactivation guard: a tenant's deactivations are held when they exceed
    # max(guard_min_contacts, guard_fraction * its active contacts), unless the tenant is allowed.
    guard_min_contacts: int = 10
    guard_fraction: float = 0.5
    allow_mass_deactivation: tuple[str, ...] = ()
    # Where the inactive-contacts CSV goes; None = inside the Dagster storage folder.
    report_path: str | None = None

    def __post_init__(self) -> None:
        import re

        for pattern in self.exclude_upn_patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"exclude_upn_patterns: {pattern!r} is not a valid regex: {exc}") from None
        if not 0 <= self.guard_fraction <= 1:
            raise ValueError(f"guard_fraction must be between 0 and 1, got {self.guard_fraction}")
        if self.guard_min_contacts < 0:
            raise ValueError(f"guard_min_contacts must be >= 0, got {self.guard_min_contacts}")

