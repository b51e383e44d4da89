"""The deactivation guard: a tenant that would lose too many contacts at once is held for a human.

A broken or half-loaded tenant looks, to the rules, like everyone left; the guard stops such a
plan from deactivating a whole customer.
"""

from __future__ import annotations

import pandas as pd

from halo_sync_pipeline.rules.normalise import normalise_company_name, normalise_company_names
from halo_sync_pipeline.schemas.plan import Action
from halo_sync_pipeline.settings import SyncSettings


def is_general_user(names: pd.Series, settings: SyncSettings) -> pd.Series:
    """Per contact name: is it the company's catch-all contact (`general_user_name`; case, surrounding
    and repeated inner whitespace ignored)? It is never deactivated and not counted by the guard."""
    target = normalise_company_name(settings.general_user_name)
    found = pd.Series(False, index=names.index, dtype=bool)
    if target is None:
        return found
    # Only names containing every word of the target can match: normalise those few, not every contact's name.
    lowered = names.astype("string").str.casefold()
    maybe = pd.Series(True, index=names.index, dtype=bool)
    for word in target.split(" "):
        maybe &= lowered.str.contains(word, regex=False).fillna(False).astype(bool)
    found[maybe] = (normalise_company_names(names[maybe]) == target).fillna(False).astype(bool)
    return found


def deactivation_limits(changes: pd.DataFrame, contacts: pd.DataFrame, settings: SyncSettings) -> pd.DataFrame:
    """Per tenant with planned deactivations: `planned`, `active_contacts` of its company (the General
    User not counted) and the `limit` max(guard_min_contacts, guard_fraction × active contacts)."""
    deactivations = changes.loc[(changes["action"] == Action.DEACTIVATE) & ~changes["held"]]
    per_tenant = deactivations.groupby(["tenant_id", "tenant_name", "company_id"], dropna=False).size()
    per_tenant = per_tenant.rename("planned").reset_index()
    counted = ~contacts["inactive"] & ~is_general_user(contacts["name"], settings)
    active = contacts.loc[counted].groupby("company_id").size()
    per_tenant["active_contacts"] = per_tenant["company_id"].map(active).fillna(0).astype("int64")
    per_tenant["limit"] = (settings.guard_fraction * per_tenant["active_contacts"]).clip(
        lower=settings.guard_min_contacts
    )
    return per_tenant


def _allowed(tenants: pd.DataFrame, settings: SyncSettings) -> pd.Series:
    allowed = {entry.strip().casefold() for entry in settings.allow_mass_deactivation}
    by_id = tenants["tenant_id"].str.strip().str.casefold().isin(allowed)
    by_name = tenants["tenant_name"].astype("string").str.strip().str.casefold().isin(allowed)
    return (by_id | by_name.fillna(False)).astype(bool)


def apply_deactivation_guard(changes: pd.DataFrame, contacts: pd.DataFrame, settings: SyncSettings) -> pd.DataFrame:
    """`changes` with the deactivations of each tenant whose planned deactivations exceed its limit
    held (`hold_reason` gives the numbers and the release), unless the tenant (id or name) is in
    `allow_mass_deactivation`."""
    limits = deactivation_limits(changes, contacts, settings)
    tripped = limits.loc[(limits["planned"] > limits["limit"]) & ~_allowed(limits, settings)]
    if tripped.empty:
        return changes
    note = (
        "guard: "
        + tripped["planned"].astype("string")
        + " deactivations > max("
        + str(settings.guard_min_contacts)
        + ", "
        + str(settings.guard_fraction)
        + " × "
        + tripped["active_contacts"].astype("string")
        + " active contacts); add the tenant to allow_mass_deactivation"
        + " to release"
    )
    notes = changes["tenant_id"].map(pd.Series(note.to_numpy(), index=tripped["tenant_id"].to_numpy()))
    # Comparing a `string` column gives a nullable `boolean`; the contract's `held` is plain bool.
    guarded = ((changes["action"] == Action.DEACTIVATE) & ~changes["held"] & notes.notna()).fillna(False).astype(bool)
    return changes.assign(
        held=changes["held"] | guarded,
        hold_reason=changes["hold_reason"].mask(guarded, notes).astype("string"),
    )
