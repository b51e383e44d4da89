"""The contact plan on random messy estates: shared addresses, upper-case and padded keys, contacts linked to
users of other tenants, quarantined and keep-active contacts, companies mapped to several tenants.

Properties rather than hand-written answers: the plan fits its schema, a contact gets at most one live
action, protected contacts are never deactivated, and the plan does not depend on the order of the rows."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from halo_sync_pipeline.rules.contacts import plan_contact_changes
from halo_sync_pipeline.schemas.plan import Action, ContactChangesSchema
from halo_sync_pipeline.settings import SyncSettings
from tests.rules import frames as f

DOMAINS = ("a.com", "b.com", "c.org")
LOCAL_PARTS = ("ann", "bob", "cat", "dan", "admin", "eve")
MATCHED = ("tenant_id", "name", "default_domain_website", "contact_email_domain")


def _address(rng: random.Random) -> str:
    address = f"{rng.choice(LOCAL_PARTS)}@{rng.choice(DOMAINS)}"
    return rng.choice([address, address.upper(), f" {address} "])


def _mappings(rng: random.Random, tenant_ids: list[str], n_companies: int) -> pd.DataFrame:
    rows = []
    for tenant_id in tenant_ids:
        method = rng.choice([*MATCHED, *MATCHED, "unmatched"])
        company_id = None if method == "unmatched" else rng.randint(1, n_companies)
        rows.append(
            {
                "tenant_id": tenant_id,
                "tenant_name": f"Tenant {tenant_id}",
                "default_domain": "a.com",
                "users_status": rng.choice(["loaded", "loaded", "loaded", "failed"]),
                "method": method,
                "reason": "no_candidate" if company_id is None else None,
                "company_id": company_id,
                "company_name": None if company_id is None else f"Company {company_id}",
                "candidates": None,
                "evidence": "random estate",
                "company_update": None,
            }
        )
    frame = pd.DataFrame(rows)
    return frame.astype({c: "string" for c in frame.columns if c != "company_id"}).astype({"company_id": "Int64"})


def random_estate(seed: int) -> tuple[pd.DataFrame, ...]:
    rng = random.Random(seed)
    tenant_ids = [f"t{i}" for i in range(rng.randint(1, 4))]
    n_companies = rng.randint(1, 3)
    users = []
    for tenant_id in tenant_ids:
        for _ in range(rng.randint(1, 7)):
            number = len(users) + 1
            users.append(
                {
                    "tenant_id": tenant_id,
                    "user_id": rng.choice([f"u{number}", f"U{number}"]),
                    "upn": _address(rng),
                    "mail": rng.choice([None, _address(rng), "  "]),
                    "smtp_aliases": rng.choice([None, f"{_address(rng)};{_address(rng)}", f"sip:{_address(rng)}"]),
                    "display_name": rng.choice(["Ann", None, "General User"]),
                    "street_address": rng.choice([None, "1 Main St"]),
                    "licence_count": rng.choice([0, 1, 1]),
                    "account_enabled": rng.random() < 0.85,
                    "is_guest": rng.random() < 0.1,
                }
            )
    user_ids = [u["user_id"].lower() for u in users]
    upns = [u["upn"] for u in users]
    contacts = [
        {
            "contact_id": contact_id,
            "company_id": rng.randint(1, n_companies),
            "name": rng.choice(["X", None, "General  user"]),
            # A user's own UPN (a pair, or an ambiguous one), any address of the pool, or a leaver's.
            "email": rng.choice(
                [None, _address(rng), rng.choice(upns).upper(), rng.choice(upns), f"left{contact_id}@a.com"]
            ),
            "email2": rng.choice([None, None, _address(rng)]),
            "phonenumber": rng.choice([None, "1"]),
            "azureoid": rng.choice([None, None, rng.choice(user_ids).upper(), rng.choice(user_ids)]),
            "inactive": rng.random() < 0.25,
            "keep_active": rng.choice([None, None, "2", "02"]),
            "quarantine": rng.choice([None] * 6 + ["bad record"]),
        }
        for contact_id in range(1, rng.randint(2, 16))
    ]
    sites = [
        {"site_id": company * 10, "company_id": company, "name": "HQ", "line1": "1 main st", "is_main": True}
        for company in range(1, n_companies + 1)
        if rng.random() < 0.8
    ]
    domains = [
        {"tenant_id": t, "domain": domain, "is_verified": rng.random() < 0.8}
        for t in tenant_ids
        for domain in rng.sample(DOMAINS, 2)
    ]
    return (
        _mappings(rng, tenant_ids, n_companies),
        f.users(*users),
        f.domains(*domains),
        f.contacts(*contacts),
        f.sites(*sites),
    )


def _assert_promises_kept(changes: pd.DataFrame, contacts: pd.DataFrame) -> None:
    ContactChangesSchema.validate(changes, lazy=True)
    live = changes.loc[~changes["held"] & changes["contact_id"].notna()]
    assert not live["contact_id"].duplicated().any(), "a contact got two live actions"
    deactivated = set(changes.loc[changes["action"] == Action.DEACTIVATE, "contact_id"].astype(int))
    protected = contacts.loc[
        contacts["inactive"]
        | contacts["quarantine"].notna()
        | contacts["keep_active"].str.strip().isin(["2", "02"]).fillna(False),
        "contact_id",
    ]
    assert deactivated.isdisjoint(protected), "an inactive, quarantined or keep-active contact is deactivated"


def _shuffled(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    return frame.sample(frac=1, random_state=seed).reset_index(drop=True)


@pytest.mark.parametrize("seed", range(25))
def test_random_estate_plan_keeps_its_promises(seed: int) -> None:
    mappings, users, domains, contacts, sites = random_estate(seed)
    # The guard is tested on its own; on these small companies it would hold most deactivations.
    settings = SyncSettings(guard_min_contacts=100)
    changes = plan_contact_changes(mappings, users, domains, contacts, sites, settings)
    _assert_promises_kept(changes, contacts)

    # The same estate with every frame's rows in another order gives the same plan.
    again = plan_contact_changes(
        _shuffled(mappings, seed), _shuffled(users, seed), domains, _shuffled(contacts, seed), sites, settings
    )
    pd.testing.assert_frame_equal(changes, again)


# Seeds 67, 166 and 183 are estates where the rules crashed before they kept one row per listed user.
@pytest.mark.parametrize("seed", [*range(10), 67, 166, 183])
def test_random_estate_with_users_listed_twice_keeps_its_promises(seed: int) -> None:
    # Never from Graph, and the blocking m365_users_schema check stops such a run before the plan; the rules
    # still must not crash on it (a gone contact whose azureoid named such a user raised "Length mismatch").
    mappings, users, domains, contacts, sites = random_estate(seed)
    again = users.sample(frac=1, random_state=seed)  # every user listed twice
    if seed % 2:  # the same user with other content
        again = again.assign(licence_count=1 - again["licence_count"], upn=again["upn"].str.upper())
    users = pd.concat([users, again], ignore_index=True)
    changes = plan_contact_changes(mappings, users, domains, contacts, sites, SyncSettings(guard_min_contacts=100))
    _assert_promises_kept(changes, contacts)
