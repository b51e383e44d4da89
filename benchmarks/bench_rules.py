"""Benchmark of the plan rules on a synthetic estate (no HTTP): 2,000 tenants × 100 users.

Run: .venv/bin/python benchmarks/bench_rules.py [n_tenants] [users_per_tenant]
Prints wall time and peak traced memory (tracemalloc, a separate run) of match_companies, plan_contact_changes
and contact_change_problems (the blocking integrity check, with the body validation).
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import pandas as pd

from halo_sync_pipeline.rules.contacts import plan_contact_changes
from halo_sync_pipeline.rules.matching import match_companies
from halo_sync_pipeline.rules.plan_checks import contact_change_problems
from halo_sync_pipeline.settings import SyncSettings


def _s(values) -> pd.Series:
    return pd.Series(values, dtype="string")


def synthetic_estate(n_tenants: int, users_per_tenant: int, seed: int = 7) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    t = np.arange(n_tenants)
    tenant_ids = _s([f"{i:08x}-0000-4000-8000-000000000000" for i in t])
    domain = _s([f"customer{i}.com" for i in t])
    tenants = pd.DataFrame(
        {
            "tenant_id": tenant_ids,
            "display_name": _s([f"Customer {i} Ltd" for i in t]),
            "default_domain": domain,
            "status": _s(np.where(t % 50 == 49, "failed", "loaded")),
            "error": _s([pd.NA] * n_tenants),
            "user_count": pd.array([users_per_tenant] * n_tenants, dtype="Int64"),
            "domain_count": pd.array([2] * n_tenants, dtype="Int64"),
        }
    )
    domains = pd.DataFrame(
        {
            "tenant_id": pd.concat([tenant_ids, tenant_ids], ignore_index=True),
            "domain": pd.concat([domain, _s([f"customer{i}.onmicrosoft.com" for i in t])], ignore_index=True),
            "is_verified": True,
            "is_default": np.r_[np.ones(n_tenants, bool), np.zeros(n_tenants, bool)],
        }
    )
    # Companies: one per tenant; a quarter mapped by tenant id, the rest by name / website / contacts.
    company_ids = t + 1000
    companies = pd.DataFrame(
        {
            "company_id": company_ids.astype("int64"),
            "name": _s(np.where(t % 4 == 1, [f"customer {i}  LTD" for i in t], [f"Company {i}" for i in t])),
            "website": _s(np.where(t % 4 == 2, [f"https://www.customer{i}.com/" for i in t], None)),
            "inactive": False,
            "main_site_id": pd.array(company_ids * 10, dtype="Int64"),
        }
    )
    mapped = t[t % 4 == 0]
    tenant_mappings = pd.DataFrame(
        {
            "tenant_id": tenant_ids[mapped].reset_index(drop=True),
            "tenant_name": _s([f"Customer {i} Ltd" for i in mapped]),
            "company_id": (mapped + 1000).astype("int64"),
            "company_name": _s([f"Company {i}" for i in mapped]),
        }
    )
    sites = pd.DataFrame(
        {
            "site_id": np.r_[company_ids * 10, company_ids * 10 + 1].astype("int64"),
            "company_id": np.r_[company_ids, company_ids].astype("int64"),
            "name": _s(["Main"] * n_tenants + ["Branch"] * n_tenants),
            "line1": _s(["1 High St"] * n_tenants + ["2 Side St"] * n_tenants),
            "is_main": np.r_[np.ones(n_tenants, bool), np.zeros(n_tenants, bool)],
        }
    )
    # Users: tenant-major; user j of tenant i.
    ti = np.repeat(t, users_per_tenant)
    uj = np.tile(np.arange(users_per_tenant), n_tenants)
    user_ids = _s([f"{i:08x}-{j:04x}-4000-8000-000000000001" for i, j in zip(ti, uj)])
    upns = _s([f"user{j}@customer{i}.com" for i, j in zip(ti, uj)])
    n_users = len(ti)
    users = pd.DataFrame(
        {
            "tenant_id": tenant_ids[ti].reset_index(drop=True),
            "user_id": user_ids,
            "upn": upns,
            "display_name": _s([f"User {j}" for j in uj]),
            "given_name": _s(["User"] * n_users),
            "surname": _s([str(j) for j in uj]),
            "mail": upns,
            "job_title": _s(["Staff"] * n_users),
            "business_phone": _s(["+44 20 0000 0000"] * n_users),
            "mobile_phone": _s([pd.NA] * n_users),
            "fax": _s([pd.NA] * n_users),
            "street_address": _s(np.where(uj % 3 == 0, "2 side st", None)),
            "smtp_aliases": _s([f"alias{j}@customer{i}.com;sip:user{j}@customer{i}.com" for i, j in zip(ti, uj)]),
            "licence_count": np.where(rng.random(n_users) < 0.9, 1, 0).astype("int64"),
            "account_enabled": rng.random(n_users) < 0.97,
            "user_type": _s(["Member"] * n_users),
            "is_guest": np.zeros(n_users, bool),
        }
    )
    # Contacts: per user 85% linked by azureoid, 5% by email only (pair), 10% none (create);
    # plus 2 leavers per company.
    kind = rng.random(n_users)
    has_contact = kind < 0.90
    ci = ti[has_contact]
    leaver_t = np.repeat(t, 2)
    n_contacts = int(has_contact.sum()) + len(leaver_t)
    contacts = pd.DataFrame(
        {
            "contact_id": np.arange(1, n_contacts + 1, dtype="int64"),
            "company_id": np.r_[ci + 1000, leaver_t + 1000].astype("int64"),
            "site_id": pd.array([pd.NA] * n_contacts, dtype="Int64"),
            "name": pd.concat([users["display_name"][has_contact], _s(["Leaver"] * len(leaver_t))], ignore_index=True),
            "firstname": _s([pd.NA] * n_contacts),
            "surname": _s([pd.NA] * n_contacts),
            "email": pd.concat(
                [upns[has_contact], _s([f"left{k}@customer{i}.com" for k, i in enumerate(leaver_t)])], ignore_index=True
            ),
            "email2": _s([pd.NA] * n_contacts),
            "email3": _s([pd.NA] * n_contacts),
            "phonenumber": _s([pd.NA] * n_contacts),
            "mobilenumber": _s([pd.NA] * n_contacts),
            "title": _s([pd.NA] * n_contacts),
            "azureoid": pd.concat(
                [user_ids.where(kind < 0.85)[has_contact], _s([pd.NA] * len(leaver_t))], ignore_index=True
            ).astype("string"),
            "inactive": False,
            "keep_active": _s([pd.NA] * n_contacts),
        }
    )
    # Halo frames carry `quarantine` (NA: nothing odd) and mappings their entry and connection ids.
    for frame in (companies, contacts, sites, tenant_mappings):
        frame["quarantine"] = _s([pd.NA] * len(frame))
    tenant_mappings["entry_id"] = pd.array(np.arange(1, len(tenant_mappings) + 1), dtype="Int64")
    tenant_mappings["connection_id"] = pd.array([1] * len(tenant_mappings), dtype="Int64")
    return {
        "tenants": tenants,
        "domains": domains,
        "companies": companies,
        "tenant_mappings": tenant_mappings,
        "users": users,
        "contacts": contacts,
        "sites": sites,
    }


def measure(label: str, run: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """Wall time of one untraced run, then peak memory of a second run under tracemalloc
    (tracing slows allocation, so it would distort the time)."""
    started = time.perf_counter()
    result = run()
    elapsed = time.perf_counter() - started
    tracemalloc.start()
    run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"{label:<24} {elapsed:8.2f} s   peak {peak / 2**20:8.1f} MiB   rows {len(result):>8}")
    return result


def main() -> None:
    n_tenants = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    per_tenant = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    settings = SyncSettings()
    started = time.perf_counter()
    estate = synthetic_estate(n_tenants, per_tenant)
    print(
        f"estate: {n_tenants} tenants, {len(estate['users'])} users, {len(estate['contacts'])} contacts "
        f"(built in {time.perf_counter() - started:.1f} s)"
    )
    mappings = measure(
        "match_companies",
        lambda: match_companies(
            estate["tenants"],
            estate["domains"],
            estate["companies"],
            estate["tenant_mappings"],
            estate["contacts"],
            settings,
        ),
    )
    print("  methods:", mappings["method"].value_counts().to_dict())
    changes = measure(
        "plan_contact_changes",
        lambda: plan_contact_changes(
            mappings, estate["users"], estate["domains"], estate["contacts"], estate["sites"], settings
        ),
    )
    print("  actions:", changes["action"].value_counts().to_dict(), " held:", int(changes["held"].sum()))
    # The blocking integrity check of the plan (contact_changes_integrity), bodies validated once per shape.
    problems = measure(
        "contact_change_problems", lambda: contact_change_problems(changes, mappings, estate["contacts"], settings)
    )
    print(f"  bodies checked: {int(changes['body'].notna().sum())}, problems: {len(problems)}")


if __name__ == "__main__":
    main()
