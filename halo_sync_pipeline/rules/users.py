"""Which Microsoft 365 users the sync considers: the seed's licence / disabled / guest filters
and its exclude-UPN patterns."""

from __future__ import annotations

import pandas as pd

from halo_sync_pipeline.rules.normalise import upn_local_parts
from halo_sync_pipeline.settings import SyncSettings

# Order matters: a user failing several filters is reported with the first one.
FILTER_REASONS = ("unlicensed", "disabled", "guest")


def required_user_properties(settings: SyncSettings) -> tuple[str, ...]:
    """The Graph user properties the filters need: a tenant whose users come without one of them is not
    planned, since an unknown licence list is not an empty one (everyone would look unlicensed)."""
    needed = {
        "assignedLicenses": settings.licensed_users_only,
        "accountEnabled": settings.exclude_disabled_accounts,
        "userType": settings.exclude_guests,
    }
    return tuple(name for name, wanted in needed.items() if wanted)


def user_filter_reasons(users: pd.DataFrame, settings: SyncSettings) -> pd.Series:
    """Per user, the first filter that drops it (`unlicensed`|`disabled`|`guest`) or NA."""
    failing = {
        # An unknown count (NA) never reaches here with the filter on: such tenants fail to load.
        "unlicensed": settings.licensed_users_only & (users["licence_count"] <= 0).fillna(False).astype(bool),
        "disabled": settings.exclude_disabled_accounts & ~users["account_enabled"],
        "guest": settings.exclude_guests & users["is_guest"],
    }
    reasons = pd.Series(pd.NA, index=users.index, dtype="string")
    for reason in reversed(FILTER_REASONS):
        reasons = reasons.mask(failing[reason], reason)
    return reasons


def excluded_by_upn_pattern(users: pd.DataFrame, settings: SyncSettings) -> pd.Series:
    """True where an `exclude_upn_patterns` regex is found (case-insensitive) in the UPN's local part.

    Seed bug fixed: the seed searched the whole UPN, so `admin` skipped every user of `cloudadmins.com`.
    """
    if not settings.exclude_upn_patterns:
        return pd.Series(False, index=users.index, dtype=bool)
    local_parts = upn_local_parts(users["upn"])
    excluded = pd.Series(False, index=users.index, dtype=bool)
    # One search per pattern: joined into one regex, a pattern with inline flags such as `(?i)` breaks.
    for pattern in settings.exclude_upn_patterns:
        excluded |= local_parts.str.contains(pattern, case=False, regex=True).fillna(False).astype(bool)
    return excluded


def select_users(users: pd.DataFrame, settings: SyncSettings) -> pd.DataFrame:
    """`users` plus `filter_reason`, `excluded_by_pattern` and `selected` (passes every filter
    and matches no exclude pattern: the users the sync creates, pairs and keeps active)."""
    filter_reason = user_filter_reasons(users, settings)
    excluded = excluded_by_upn_pattern(users, settings)
    return users.assign(
        filter_reason=filter_reason,
        excluded_by_pattern=excluded,
        selected=(filter_reason.isna() & ~excluded).astype(bool),
    )
