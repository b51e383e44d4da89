"""Checks between stages, as pure functions for the Dagster asset checks to call.

Each returns a DataFrame of failures, one row per offending record (empty = pass), with the
record's identifying columns, `check` (a short name) and `detail` (what is wrong).
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import pandas as pd

from halo_sync_pipeline.halo_api_schema import BodyProblems, ShapeCheck, check_body
from halo_sync_pipeline.rules.contacts import actionable_tenants
from halo_sync_pipeline.rules.normalise import keep_active_equals
from halo_sync_pipeline.schemas.plan import CONFLICT_METHOD, WRITE_BACK_METHODS, Action
from halo_sync_pipeline.settings import SyncSettings

MAPPING_FAILURE_COLUMNS = ["tenant_id", "company_id", "check", "detail"]
CHANGE_FAILURE_COLUMNS = ["tenant_id", "contact_id", "user_id", "check", "detail"]
WARNING_COLUMNS = ["tenant_name", "tenant_id", "check", "detail"]


Failing = tuple[pd.DataFrame, str | pd.Series, str | pd.Series]  # (offending rows, check name, detail)


def _failures(rows: pd.DataFrame, check: str | pd.Series, detail: pd.Series | str, columns: list[str]) -> pd.DataFrame:
    out = rows.assign(check=check, detail=detail).reindex(columns=columns)
    return out.astype({"check": "string", "detail": "string"})


def _combine(parts: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    found = [p for p in parts if not p.empty]
    if not found:
        return pd.DataFrame({c: pd.Series(dtype="string") for c in columns})
    return pd.concat(found, ignore_index=True)[columns]


def _all_failures(columns: list[str], failing: list[Failing], *more: pd.DataFrame) -> pd.DataFrame:
    """One failures frame from (rows, check, detail) triples plus frames already in `columns`."""
    return _combine([_failures(rows, check, detail, columns) for rows, check, detail in failing] + list(more), columns)


# ---------------------------------------------------------------- company_mappings


def company_mapping_problems(
    company_mappings: pd.DataFrame, tenants: pd.DataFrame, companies: pd.DataFrame
) -> pd.DataFrame:
    """Blocking: one row per tenant; every mapped company exists and is active; company
    write-backs only for matches by rules 2–5, aimed at the mapped company, valid for Halo, at most
    one per company."""
    ids = company_mappings["tenant_id"]
    missing = tenants.loc[~tenants["tenant_id"].isin(ids)]
    duplicated = company_mappings.loc[ids.duplicated(keep=False)]
    unknown = company_mappings.loc[~ids.isin(tenants["tenant_id"])]
    mapped = company_mappings.loc[company_mappings["company_id"].notna()]
    exists = mapped["company_id"].isin(companies["company_id"])
    inactive_ids = companies.loc[companies["inactive"], "company_id"]
    updates = company_mappings.loc[company_mappings["company_update"].notna()]
    # Each write-back sends the company's whole tenant list as read before any write, so a second one
    # to the same company would drop the first's entry (the matching rules make such pairs conflicts).
    shared = updates.loc[updates["company_id"].duplicated(keep=False) & updates["company_id"].notna()]
    failing: list[Failing] = [
        (missing, "tenant_without_mapping_row", "tenant has no company_mappings row"),
        (duplicated, "duplicate_tenant_row", "tenant has several company_mappings rows"),
        (unknown, "unknown_tenant", "row for a tenant not in m365_tenants"),
        (mapped.loc[~exists], "company_missing", "mapped company is not a Halo company"),
        (mapped.loc[mapped["company_id"].isin(inactive_ids)], "company_inactive", "mapped company is inactive"),
        (shared, "several_write_backs_for_company", "another tenant's write-back goes to the same company"),
    ]
    return _all_failures(MAPPING_FAILURE_COLUMNS, failing, _company_update_problems(company_mappings))


def _company_update_problems(company_mappings: pd.DataFrame) -> pd.DataFrame:
    rows = []
    updates = company_mappings.loc[company_mappings["company_update"].notna()]
    for tenant_id, method, company_id, text, users_status in zip(
        updates["tenant_id"],
        updates["method"],
        updates["company_id"],
        updates["company_update"],
        updates["users_status"],
    ):
        detail = _company_update_problem(tenant_id, method, company_id, text)
        if detail is None and users_status != "loaded":
            detail = "company write-back planned for a tenant whose users failed to load (it gets no writes at all)"
        if detail:
            rows.append(
                {"tenant_id": tenant_id, "company_id": company_id, "check": "bad_company_update", "detail": detail}
            )
    return pd.DataFrame(rows, columns=MAPPING_FAILURE_COLUMNS).astype({"check": "string", "detail": "string"})


def _company_update_problem(tenant_id: str, method: str, company_id: object, text: str) -> str | None:
    # Seed bug: an unmatched tenant reached the write and Halo got a null company.
    if method not in WRITE_BACK_METHODS or pd.isna(company_id):
        return f"company write-back planned for method {method!r} without a matched company"
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"company_update is not JSON: {exc}"
    problems = check_body("Client", body)
    if not problems.ok:
        return f"invalid POST /api/Client body: {problems.errors + [f'unknown field {u}' for u in problems.unknown_fields]}"
    if body.get("id") != int(str(company_id)):
        return f"company_update targets company {body.get('id')!r}, not the mapped company {company_id}"
    if tenant_id not in {entry.get("azure_tenant_id") for entry in body.get("azure_tenants") or []}:
        return "company_update does not add the tenant to azure_tenants"
    return None


REVIEW_COLUMNS = ["tenant_name", "tenant_id", "method", "company_id", "check", "detail"]


def company_mapping_warnings(company_mappings: pd.DataFrame) -> pd.DataFrame:
    """Warnings: unmatched tenants (reason, candidates, evidence) and conflicts (the company, the other
    tenants and the evidence); each is fixed at the source, by mapping the tenant in Halo."""
    unmatched = company_mappings.loc[company_mappings["method"] == "unmatched"]
    detail = (
        unmatched["reason"]
        + (" (candidates " + unmatched["candidates"] + ")").fillna("")
        + ": "
        + unmatched["evidence"]
    )
    conflicts = company_mappings.loc[company_mappings["method"] == CONFLICT_METHOD]
    conflict_detail = "conflict with " + conflicts["candidates"].fillna("?") + ": " + conflicts["evidence"]
    failing: list[Failing] = [
        (unmatched, "unmatched_" + unmatched["reason"], detail),
        (conflicts, "conflict", conflict_detail),
    ]
    return _all_failures(REVIEW_COLUMNS, failing)


# ---------------------------------------------------------------- contact_changes


def contact_change_problems(
    contact_changes: pd.DataFrame, company_mappings: pd.DataFrame, contacts: pd.DataFrame, settings: SyncSettings
) -> pd.DataFrame:
    """Blocking: no two creates for one (company, email); no create giving a second active contact an
    azureoid; no deactivation of a keep-active contact; no action for a failed, unmatched, conflicting or
    excluded tenant; no contact acted on twice unless held (the rules' safety net holds such tenants);
    every body a valid POST /api/Users element with no unknown field, aimed at its contact / company."""
    changes = contact_changes
    creates = changes.loc[changes["action"] == Action.CREATE]
    duplicate_creates = creates.loc[
        creates.assign(email_key=creates["email"].str.strip().str.lower()).duplicated(
            ["company_id", "email_key"], keep=False
        )
    ]
    keep_active_ids = contacts.loc[
        keep_active_equals(contacts["keep_active"], settings.keep_active_value), "contact_id"
    ]
    actionable = actionable_tenants(company_mappings)
    actionable_pairs = pd.MultiIndex.from_frame(actionable[["tenant_id", "company_id"]])
    not_actionable = ~pd.MultiIndex.from_frame(changes[["tenant_id", "company_id"]]).isin(actionable_pairs)
    on_contacts = changes.loc[changes["contact_id"].notna()]
    keep_active_deactivated = changes["action"].eq(Action.DEACTIVATE) & changes["contact_id"].isin(keep_active_ids)
    keep_active_detail = f"contact's {settings.keep_active_field} is {settings.keep_active_value!r}"
    failing: list[Failing] = [
        (duplicate_creates, "duplicate_create", "several creates for this company and email "
         + duplicate_creates["email"].fillna("")),
        (changes.loc[keep_active_deactivated], "keep_active_contact_deactivated", keep_active_detail),
        (changes.loc[not_actionable], "tenant_not_actionable",
         "tenant is unmatched, excluded, failed to load users, or not mapped to this company"),
        (_acted_on_twice(on_contacts), "contact_acted_on_twice", "several actions planned for one contact, not all held"),
        (_second_active_azureoid(creates, contacts), "create_duplicates_azureoid",
         "an unheld create gives a second active contact this user's azureoid"),
    ]  # fmt: skip
    return _all_failures(CHANGE_FAILURE_COLUMNS, failing, _body_problems(changes))


def _acted_on_twice(on_contacts: pd.DataFrame) -> pd.DataFrame:
    twice = on_contacts.loc[on_contacts["contact_id"].duplicated(keep=False)]
    live = twice.loc[~twice["held"], "contact_id"]
    return twice.loc[twice["contact_id"].isin(live)]


def _second_active_azureoid(creates: pd.DataFrame, contacts: pd.DataFrame) -> pd.DataFrame:
    active_oids = pd.Index(contacts.loc[~contacts["inactive"], "azureoid"].dropna().str.lower().unique())
    live = creates.loc[~creates["held"]]
    # Index lookup, not Series.isin: the latter walks a large right-hand side in Python for Arrow strings.
    return live.loc[active_oids.get_indexer(live["user_id"].str.lower()) >= 0]


class _Change(NamedTuple):
    tenant_id: object
    contact_id: object
    user_id: object
    company_id: object
    action: object
    body: object


def _body_problems(changes: pd.DataFrame) -> pd.DataFrame:
    """Every row with a body: parsed, validated against Halo's schema once per body shape (`ShapeCheck`)
    and checked against its own target; the same details as validating one by one. Each parsed body is
    dropped at once: keeping 200k of them alive makes the cyclic GC rescan them again and again."""
    rows = []
    check = ShapeCheck("Users")
    columns = (changes[name].tolist() for name in _Change._fields)  # plain lists: far faster to walk than itertuples
    for record in map(_Change._make, zip(*columns)):
        if record.action == Action.AMBIGUOUS:
            if not pd.isna(record.body):
                rows.append(
                    {**_ids(record), "check": "ambiguous_with_body", "detail": "an ambiguous row must not write"}
                )
            continue
        if pd.isna(record.body):
            rows.append({**_ids(record), "check": "missing_body", "detail": f"{record.action} without a body"})
            continue
        try:
            body = json.loads(str(record.body))
        except json.JSONDecodeError as exc:
            rows.append({**_ids(record), "check": "invalid_body", "detail": f"body is not JSON: {exc}"})
            continue
        detail = _schema_detail(check(body)) or _target_problem(record, body)
        if detail:
            rows.append({**_ids(record), "check": "invalid_body", "detail": detail})
    return pd.DataFrame(rows, columns=CHANGE_FAILURE_COLUMNS).astype({"check": "string", "detail": "string"})


def _ids(record: _Change) -> dict[str, object]:
    return {"tenant_id": record.tenant_id, "contact_id": record.contact_id, "user_id": record.user_id}


def _schema_detail(problems: BodyProblems) -> str | None:
    if problems.ok:
        return None
    return "; ".join(
        problems.errors + [f"unknown field {name!r} (Halo would drop it)" for name in problems.unknown_fields]
    )


def _target_problem(record: _Change, body: dict[str, Any]) -> str | None:
    if record.action == Action.CREATE:
        if "id" in body or body.get("client_id") != record.company_id:
            return f"create body must have no id and client_id {record.company_id}"
        return None
    if body.get("id") != record.contact_id:
        return f"body id {body.get('id')!r} is not the contact {record.contact_id}"
    return None


def contact_change_warnings(contact_changes: pd.DataFrame) -> pd.DataFrame:
    """Warnings: per tenant, action and hold reason, the held actions (guard, no site, ambiguous,
    quarantined contact, moved person, deactivation off) with why they are held and what releases them."""
    held = contact_changes.loc[contact_changes["held"]]
    counts = (
        held.groupby(["tenant_id", "tenant_name", "action", "hold_reason"], dropna=False).size().reset_index(name="n")
    )
    detail = counts["n"].astype("string") + " " + counts["action"] + " held: " + counts["hold_reason"].fillna("")
    return _all_failures(WARNING_COLUMNS, [(counts, "held_" + counts["action"], detail)])
