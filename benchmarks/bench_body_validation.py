"""Body validation of `contact_changes_integrity`: every body on its own (before) vs once per shape (after).

    .venv/bin/python benchmarks/bench_body_validation.py --bodies 200000

Builds `--bodies` plan rows shaped like the rules' (creates with a varying set of optional fields,
pairs, reactivations, deactivations; a few bad ones), then times the old one-by-one validation and
`plan_checks._body_problems`, checks they find the same problems and prints both. Numbers, not assertions.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import time

import pandas as pd

from halo_sync_pipeline.halo_api_schema import check_body
from halo_sync_pipeline.rules.plan_checks import CHANGE_FAILURE_COLUMNS, _body_problems


def plan_rows(n: int) -> pd.DataFrame:
    rows = []
    for i in range(n):
        kind = i % 10
        oid = f"{i:08x}-0000-4000-8000-000000000000"
        if kind < 6:  # creates: optional fields present or not, as users' data allow
            body: dict[str, object] = {"client_id": 1000 + i // 100, "site_id": 10000 + i // 100, "name": f"Person {i}",
                                       "firstname": "Person", "surname": f"{i}", "emailaddress": f"p{i}@c{i // 100}.com",
                                       "azureoid": oid}  # fmt: skip
            if i % 3:
                body["phonenumber"] = f"+44 20 7946 {i % 10000:04d}"
            if i % 5:
                body["title"] = "Engineer"
            if i % 7 == 0:
                body |= {"email2": f"p{i}@c{i // 100}.onmicrosoft.net", "email3": f"alias{i}@c{i // 100}.com"}
            action, contact_id, company_id = "create", pd.NA, 1000 + i // 100
        elif kind < 8:
            body, action, contact_id, company_id = (
                {"id": i, "azureoid": oid, "inactive": False},
                "pair",
                i,
                1000 + i // 100,
            )
        else:
            body, action, contact_id, company_id = {"id": i, "inactive": True}, "deactivate", i, 1000 + i // 100
        if i % 20011 == 0:
            body["emailaddress"] = 5  # a planted wrong type
        rows.append({"tenant_id": f"t{i // 100}", "contact_id": contact_id, "user_id": oid, "company_id": company_id,
                     "action": action, "body": json.dumps(body)})  # fmt: skip
    return pd.DataFrame(rows).astype({"contact_id": "Int64", "body": "string", "action": "string"})


def body_problems_one_by_one(changes: pd.DataFrame) -> pd.DataFrame:
    """The check as it was before shapes (each distinct body text parsed and validated on its own)."""
    rows, checked = [], {}
    for r in changes[["tenant_id", "contact_id", "user_id", "company_id", "action", "body"]].itertuples(index=False):
        ids = {"tenant_id": r.tenant_id, "contact_id": r.contact_id, "user_id": r.user_id}
        if r.action == "ambiguous" or pd.isna(r.body):
            continue
        if r.body not in checked:
            try:
                problems = check_body("Users", json.loads(r.body))
                checked[r.body] = "; ".join(
                    problems.errors + [f"unknown field {u!r} (Halo would drop it)" for u in problems.unknown_fields]
                )
            except json.JSONDecodeError as exc:
                checked[r.body] = f"body is not JSON: {exc}"
        detail = checked[r.body]
        if not detail:
            body = json.loads(r.body)
            if r.action == "create" and ("id" in body or body.get("client_id") != r.company_id):
                detail = f"create body must have no id and client_id {r.company_id}"
            elif r.action != "create" and body.get("id") != r.contact_id:
                detail = f"body id {body.get('id')!r} is not the contact {r.contact_id}"
        if detail:
            rows.append({**ids, "check": "invalid_body", "detail": detail})
    return pd.DataFrame(rows, columns=CHANGE_FAILURE_COLUMNS).astype({"check": "string", "detail": "string"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bodies", type=int, default=200_000)
    parser.add_argument("--profile", action="store_true", help="cProfile the shape-based check, top 12 by own time")
    args = parser.parse_args()
    changes = plan_rows(args.bodies)
    _body_problems(changes.head(10))  # load the schema and build the validator outside the timings

    started = time.perf_counter()
    before = body_problems_one_by_one(changes)
    before_s = time.perf_counter() - started
    started = time.perf_counter()
    after = _body_problems(changes)
    after_s = time.perf_counter() - started
    same = before.reset_index(drop=True).equals(after.reset_index(drop=True))
    print(
        f"{args.bodies} bodies: one by one {before_s:.2f} s, once per shape {after_s:.2f} s "
        f"({before_s / after_s:.0f}x); problems found {len(before)} / {len(after)}, identical: {same}"
    )
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(_body_problems, changes)
        pstats.Stats(profile).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
