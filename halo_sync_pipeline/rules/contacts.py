"""What to do with each Halo contact of a matched company (issue 4, `contact_changes`).

Per matched tenant whose users loaded, for its selected users and its company's contacts:
`link_by_azureoid` → reactivate / update, else `pair_by_email` → pair / ambiguous, else
`plan_creates`; then `plan_deactivations` for the company's remaining active contacts, and
finally `apply_deactivation_guard`. Every row says why (`evidence`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping

import pandas as pd

from halo_sync_pipeline.rules.guard import apply_deactivation_guard
from halo_sync_pipeline.rules.normalise import email_domains, normalise_company_name, normalise_company_names
from halo_sync_pipeline.rules.users import select_users
from halo_sync_pipeline.schemas.plan import MATCHED_METHODS
from halo_sync_pipeline.settings import SyncSettings

CHANGE_COLUMNS = [
    "tenant_id", "tenant_name", "company_id", "company_name", "contact_id", "user_id", "action", "held",
    "reason", "name", "email", "phonenumber", "mobilenumber", "body", "evidence",
]
# Halo contact field <- Microsoft 365 user column (users' `surname` is renamed to avoid the clash).
UPDATED_FIELDS = {
    "firstname": "given_name",
    "surname": "user_surname",
    "name": "display_name",
    "phonenumber": "business_phone",
    "mobilenumber": "mobile_phone",
}
_PLAIN_ADDRESS = re.compile(r"^[^\s:;@]+@[^\s:;@]+$")


# ---------------------------------------------------------------- inputs


def actionable_tenants(company_mappings: pd.DataFrame) -> pd.DataFrame:
    """Matched tenants whose users loaded: the only ones that get contact actions."""
    ok = (
        company_mappings["method"].isin(MATCHED_METHODS)
        & (company_mappings["users_status"] == "loaded").fillna(False)
        & company_mappings["company_id"].notna()
    )
    tenants = company_mappings.loc[ok, ["tenant_id", "tenant_name", "company_id", "company_name"]]
    return tenants.astype({"company_id": "int64"}).reset_index(drop=True)


def _key(values: pd.Series) -> pd.Series:
    return values.astype("string").str.strip().str.lower().replace("", pd.NA)


def tenant_users(users: pd.DataFrame, tenants: pd.DataFrame, settings: SyncSettings) -> pd.DataFrame:
    """All users of the actionable tenants with their company, selection and match keys."""
    found = select_users(users.loc[users["tenant_id"].isin(tenants["tenant_id"])], settings)
    missing = found["user_id"].isna() | found["upn"].isna()
    if missing.any():
        bad = found.loc[missing, ["tenant_id", "user_id", "upn"]].head(5).to_dict("records")
        raise ValueError(f"m365_users rows without user_id or upn (first {len(bad)}): {bad}")
    found = found.rename(columns={"surname": "user_surname"}).merge(tenants[["tenant_id", "company_id"]], on="tenant_id")
    return found.assign(user_key=_key(found["user_id"]), upn_key=_key(found["upn"]))


def tenant_contacts(contacts: pd.DataFrame, tenants: pd.DataFrame) -> pd.DataFrame:
    """The matched companies' contacts (active and inactive), once per tenant mapped to the company."""
    found = contacts.merge(tenants[["tenant_id", "company_id"]], on="company_id")
    return found.assign(oid_key=_key(found["azureoid"]), email_key=_key(found["email"]))


def _changes(frame: pd.DataFrame, action: str, reason: object, held: object, body: Iterable, evidence: object,
             contact_fields: bool = True) -> pd.DataFrame:
    """Change rows (without tenant/company names) for `frame`'s rows."""
    source = (
        {"name": "name", "email": "email", "phonenumber": "phonenumber", "mobilenumber": "mobilenumber"}
        if contact_fields
        else {"name": "display_name", "email": "upn", "phonenumber": "business_phone", "mobilenumber": "mobile_phone"}
    )
    out = pd.DataFrame(
        {
            "tenant_id": frame["tenant_id"].astype("string"),
            "company_id": frame["company_id"].astype("int64"),
            "contact_id": pd.array(frame["contact_id"] if contact_fields else [pd.NA] * len(frame), dtype="Int64"),
            "user_id": frame["user_id"].astype("string") if "user_id" in frame else pd.NA,
            "action": action,
            "held": held,
            "reason": reason,
            **{column: frame[src].astype("string") for column, src in source.items()},
            "body": pd.Series(list(body), index=frame.index, dtype="string"),
            "evidence": evidence,
        },
        index=frame.index,
    )
    return out.astype({"user_id": "string", "action": "string", "reason": "string", "evidence": "string", "held": bool})


def _json(body: Mapping[str, object]) -> str:
    return json.dumps(body, ensure_ascii=False)


# ---------------------------------------------------------------- linked by azureoid


def link_by_azureoid(selected_users: pd.DataFrame, contacts: pd.DataFrame) -> pd.DataFrame:
    """(user, contact) pairs where the contact's azureoid is the selected user's id (case-insensitive)."""
    users = selected_users.drop(columns=["company_id"])
    return users.merge(contacts, left_on=["tenant_id", "user_key"], right_on=["tenant_id", "oid_key"])


def plan_reactivations(links: pd.DataFrame) -> pd.DataFrame:
    """`reactivate` for a user whose linked contacts are all inactive (the highest contact id)."""
    any_active = (~links["inactive"]).groupby([links["tenant_id"], links["user_id"]]).transform("any")
    inactive_only = links.loc[~any_active].sort_values("contact_id")
    chosen = inactive_only.drop_duplicates(["tenant_id", "user_id"], keep="last")
    bodies = (_json({"id": int(c), "inactive": False}) for c in chosen["contact_id"])
    evidence = (
        "inactive contact " + chosen["contact_id"].astype("string") + " has azureoid " + chosen["user_key"]
        + " of selected user " + chosen["upn"]
    )
    return _changes(chosen, "reactivate", "azureoid_matches_user", False, bodies, evidence)


def plan_updates(links: pd.DataFrame, settings: SyncSettings) -> pd.DataFrame:
    """`update` of an active linked contact whose mapped fields differ from the user's, when
    `update_contact_fields` is on. A blank Microsoft 365 value never overwrites a Halo value."""
    active = links.loc[~links["inactive"]]
    if not settings.update_contact_fields or active.empty:
        return _changes(active.iloc[0:0], "update", "fields_differ", False, [], "")
    changed = pd.DataFrame(index=active.index)
    for field, source in UPDATED_FIELDS.items():
        new = active[source].astype("string").str.strip().replace("", pd.NA)
        old = active[field].astype("string").str.strip().fillna("")
        changed[field] = new.where((new != old).fillna(False))
    rows = active.loc[changed.notna().any(axis=1)]
    bodies, evidence = [], []
    for index, contact_id in zip(rows.index, rows["contact_id"]):
        diffs = changed.loc[index].dropna()
        bodies.append(_json({"id": int(contact_id), **diffs.to_dict()}))
        evidence.append(
            f"contact {contact_id} linked by azureoid to user {rows.at[index, 'upn']}; "
            + "; ".join(f'{f} "{_text(rows.at[index, f])}" → "{v}"' for f, v in diffs.items())
        )
    return _changes(rows, "update", "fields_differ", False, bodies, pd.Series(evidence, index=rows.index))


def _text(value: object) -> str:
    return "" if pd.isna(value) else str(value)


# ---------------------------------------------------------------- paired by email


def pair_by_email(unlinked_users: pd.DataFrame, contacts: pd.DataFrame, all_users: pd.DataFrame) -> pd.DataFrame:
    """(user, contact) candidates: the contact's email equals the user's UPN (case-insensitive,
    trimmed) and its azureoid is empty or stale (not the id of any user of the tenant), with
    `n_candidates` per user."""
    user_ids = all_users[["tenant_id", "user_key"]].drop_duplicates().assign(current=True)
    with_oid = contacts.merge(user_ids, left_on=["tenant_id", "oid_key"], right_on=["tenant_id", "user_key"], how="left")
    pairable = contacts.loc[with_oid["current"].isna().to_numpy()]
    users = unlinked_users.drop(columns=["company_id"])
    found = users.merge(pairable, left_on=["tenant_id", "upn_key"], right_on=["tenant_id", "email_key"])
    found["n_candidates"] = found.groupby(["tenant_id", "user_id"])["contact_id"].transform("size")
    return found


def plan_pairs(candidates: pd.DataFrame) -> pd.DataFrame:
    """`pair` (set azureoid, inactive=false) for a user's only candidate; `ambiguous` (held, no
    body) on every candidate of a user with several."""
    single = candidates.loc[candidates["n_candidates"] == 1]
    old_oid = ("its azureoid " + single["oid_key"] + " is no user of this tenant").fillna("its azureoid is empty")
    pairs = _changes(
        single, "pair", "email_matches_upn", False,
        (_json({"id": int(c), "azureoid": u, "inactive": False}) for c, u in zip(single["contact_id"], single["user_key"])),
        "contact " + single["contact_id"].astype("string") + " email " + single["email_key"]
        + " = UPN of selected user " + single["user_key"] + "; " + old_oid,
    )
    several = candidates.loc[candidates["n_candidates"] > 1]
    ids = several.groupby(["tenant_id", "user_id"])["contact_id"].transform(lambda s: ", ".join(map(str, sorted(s))))
    ambiguous = _changes(
        several, "ambiguous", "several_contacts_match_upn", True, [pd.NA] * len(several),
        "contacts " + ids.astype("string") + " all have email " + several["email_key"] + " = UPN of selected user "
        + several["user_key"] + " and an empty or stale azureoid: none is written and no contact is created",
    )
    return pd.concat([pairs, ambiguous])


# ---------------------------------------------------------------- created


def choose_site(users: pd.DataFrame, sites: pd.DataFrame) -> pd.DataFrame:
    """Per user (same index): `site_id` (Int64, NA when none) and `site_evidence`.

    The company's site whose address line 1 equals the user's street address (case-insensitive,
    trimmed; highest site id on ties), else the company's main site (highest id if several)."""
    # pandas merges missing keys as equal: a user without a street address must not land on a site
    # without an address line, so both sides drop their missing keys first.
    keyed_sites = sites.assign(line1_key=_key(sites["line1"])).dropna(subset=["line1_key"])
    wanted = pd.DataFrame({"company_id": users["company_id"], "street_key": _key(users["street_address"])})
    by_address = (
        wanted.dropna(subset=["street_key"])
        .reset_index(names="row")
        .merge(keyed_sites, left_on=["company_id", "street_key"], right_on=["company_id", "line1_key"])
        .sort_values("site_id")
        .drop_duplicates("row", keep="last")
        .set_index("row")
    )
    main = sites.loc[sites["is_main"]].sort_values("site_id").drop_duplicates("company_id", keep="last")
    main = main.set_index("company_id")
    site_count = sites.groupby("company_id").size()

    address_site = by_address["site_id"].reindex(users.index)
    main_site = users["company_id"].map(main["site_id"]).astype("Int64")
    main_name = users["company_id"].map(main["name"]).astype("string")
    site_id = pd.array(address_site.fillna(main_site), dtype="Int64")

    address_note = (
        "site " + by_address["site_id"].astype("string") + " " + ('"' + by_address["name"] + '"').fillna("")
        + ': address line 1 "' + by_address["line1"] + "\" = the user's street address"
    ).reindex(users.index)
    main_note = ("site " + main_site.astype("string") + " " + ('"' + main_name + '"').fillna("")
                 + ": the company's main site").astype("string")
    count = users["company_id"].map(site_count).fillna(0).astype("int64")
    no_site_note = pd.Series("the company has no site", index=users.index, dtype="string").mask(
        count > 0, "the company has " + count.astype("string") + " site(s) but no main site and none at the user's street address"
    )
    evidence = address_note.fillna(main_note).fillna(no_site_note)
    return pd.DataFrame({"site_id": site_id, "site_evidence": evidence.astype("string")}, index=users.index)


def secondary_emails(smtp_aliases: object, upn: str) -> list[str]:
    """The user's secondary SMTP addresses for email2/email3: plain addresses only (seed bug: it also
    took `sip:` and `x500:` proxy addresses), not `*.onmicrosoft.com`, not the UPN, no repeats."""
    if pd.isna(smtp_aliases):
        return []
    found: list[str] = []
    for alias in str(smtp_aliases).split(";"):
        address = alias.strip().lower()
        if _PLAIN_ADDRESS.match(address) and not address.endswith(".onmicrosoft.com") and address != upn:
            if address not in found:
                found.append(address)
    return found


def create_contact_body(user: Mapping[str, object], company_id: int, site_id: int | None) -> dict[str, object]:
    """POST /api/Users element creating the contact, with Halo's real field names (seed bug: it sent
    `companyID`/`lastName`, which Halo silently drops). Blank fields are omitted."""
    upn = str(user["upn"]).strip().lower()
    aliases = secondary_emails(user["smtp_aliases"], upn)
    body: dict[str, object] = {
        "client_id": int(company_id),
        "site_id": None if site_id is None or pd.isna(site_id) else int(site_id),
        "name": user["display_name"],
        "firstname": user["given_name"],
        "surname": user["user_surname"],
        "title": user["job_title"],
        "emailaddress": upn,
        "email2": aliases[0] if aliases else None,
        "email3": aliases[1] if len(aliases) > 1 else None,
        "phonenumber": user["business_phone"],
        "mobilenumber": user["mobile_phone"],
        "fax": user["fax"],
        "azureoid": user["user_key"],
    }
    return {field: _strip(value) for field, value in body.items() if not _blank(value)}


def _blank(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, str) and not value.strip())


def _strip(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


BODY_USER_COLUMNS = ["upn", "smtp_aliases", "display_name", "given_name", "user_surname", "job_title",
                     "business_phone", "mobile_phone", "fax", "user_key"]


def plan_creates(users: pd.DataFrame, sites: pd.DataFrame) -> pd.DataFrame:
    """`create` for each of `users` (selected, neither linked nor an email candidate); held with
    reason `no_site` when the company has no site to put the contact in."""
    site = choose_site(users, sites)
    records = users[BODY_USER_COLUMNS].astype(object).where(users[BODY_USER_COLUMNS].notna(), None)
    bodies = (
        _json(create_contact_body(user, company_id, site_id))
        for user, company_id, site_id in zip(records.to_dict("records"), users["company_id"], site["site_id"])
    )
    no_site = site["site_id"].isna()
    evidence = (
        "no contact has azureoid " + users["user_key"] + " or email " + users["upn_key"] + "; " + site["site_evidence"]
    )
    reason = pd.Series("new_user", index=users.index, dtype="string").mask(no_site, "no_site")
    return _changes(users, "create", reason, no_site.to_numpy(), bodies, evidence, contact_fields=False)


# ---------------------------------------------------------------- deactivated


def _joined_key(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    # One hashable string per row: a hash-based isin, far faster than a sorted MultiIndex.
    first, *rest = columns
    key = frame[first].astype("string")
    for column in rest:
        key = key + "\x1f" + frame[column].astype("string")
    return key


def _in_pairs(left: pd.DataFrame, left_on: list[str], right: pd.DataFrame, right_on: list[str]) -> pd.Series:
    """Per row of `left`: is (left_on) among `right`'s (right_on) rows? Rows with a missing key are not."""
    right_keys = _joined_key(right, right_on).dropna().unique()
    return _joined_key(left, left_on).isin(right_keys).fillna(False).astype(bool)


def deactivation_candidates(
    contacts: pd.DataFrame, users: pd.DataFrame, handled_contact_ids: pd.Series, settings: SyncSettings
) -> pd.DataFrame:
    """Active contacts the sync may deactivate: not linked, paired or ambiguous, email not a selected
    user's UPN, not keep-active (compared as text), not the General User, not an excluded-pattern user's."""
    selected = users.loc[users["selected"]]
    excluded = users.loc[users["excluded_by_pattern"]]
    keep_active = (contacts["keep_active"].astype("string").str.strip() == settings.keep_active_value.strip())
    # Same folding as company names: case, surrounding and repeated inner whitespace do not matter.
    general_user = normalise_company_names(contacts["name"]) == normalise_company_name(settings.general_user_name)
    protected = (
        contacts["inactive"]
        | contacts["contact_id"].isin(handled_contact_ids)
        | _in_pairs(contacts, ["tenant_id", "email_key"], selected, ["tenant_id", "upn_key"])
        | keep_active.fillna(False)
        | general_user.fillna(False)
        | _in_pairs(contacts, ["tenant_id", "oid_key"], excluded, ["tenant_id", "user_key"])
        | _in_pairs(contacts, ["tenant_id", "email_key"], excluded, ["tenant_id", "upn_key"])
    )
    return contacts.loc[~protected]


def plan_deactivations(
    contacts: pd.DataFrame,
    users: pd.DataFrame,
    domains: pd.DataFrame,
    handled_contact_ids: pd.Series,
    settings: SyncSettings,
) -> pd.DataFrame:
    """`deactivate` a candidate contact (see `deactivation_candidates`) whose azureoid is not a selected
    user's and whose email domain is verified in the tenant (reason: the user's filter reason, else
    `gone_from_m365`), or that has no email, phone or mobile (`no_contact_details`)."""
    candidates = deactivation_candidates(contacts, users, handled_contact_ids, settings)
    if not settings.deactivate_contacts:
        candidates = candidates.iloc[0:0]
    candidates = candidates.assign(domain=email_domains(candidates["email"]))
    verified = domains.loc[domains["is_verified"]].assign(domain=_key(domains.loc[domains["is_verified"], "domain"]))
    selected = users.loc[users["selected"]]
    gone = (
        ~_in_pairs(candidates, ["tenant_id", "oid_key"], selected, ["tenant_id", "user_key"])
        & _in_pairs(candidates, ["tenant_id", "domain"], verified, ["tenant_id", "domain"])
    )
    blank = [candidates[c].astype("string").str.strip().replace("", pd.NA).isna() for c in ("email", "phonenumber", "mobilenumber")]
    no_details = ~gone & blank[0] & blank[1] & blank[2]
    return pd.concat([
        _gone_deactivations(candidates.loc[gone], users),
        _changes(
            candidates.loc[no_details].assign(user_id=pd.NA), "deactivate", "no_contact_details", False,
            (_json({"id": int(c), "inactive": True}) for c in candidates.loc[no_details, "contact_id"]),
            "active contact " + candidates.loc[no_details, "contact_id"].astype("string") + " has no email, phone or mobile",
        ),
    ])


def _gone_deactivations(contacts: pd.DataFrame, users: pd.DataFrame) -> pd.DataFrame:
    """Deactivations of contacts at a verified domain with no selected user; the reason is found by
    looking the contact up among all the tenant's users (azureoid first, then email = UPN)."""
    lookup = users[["tenant_id", "user_key", "upn_key", "upn", "filter_reason"]]
    by_oid = contacts[["tenant_id", "oid_key"]].merge(
        lookup, left_on=["tenant_id", "oid_key"], right_on=["tenant_id", "user_key"], how="left"
    ).set_index(contacts.index)
    by_upn = contacts[["tenant_id", "email_key"]].merge(
        lookup.drop_duplicates(["tenant_id", "upn_key"]), left_on=["tenant_id", "email_key"],
        right_on=["tenant_id", "upn_key"], how="left",
    ).set_index(contacts.index)
    found = by_oid[["user_key", "upn", "filter_reason"]].fillna(by_upn[["user_key", "upn", "filter_reason"]])
    reason = found["filter_reason"].astype("string").fillna("gone_from_m365")
    who = ("user " + found["upn"].astype("string") + " is " + reason).fillna(
        "no user of the tenant has azureoid " + contacts["oid_key"].fillna("(empty)") + " or UPN "
        + contacts["email_key"]
    )
    evidence = (
        "active contact " + contacts["contact_id"].astype("string") + " email domain " + contacts["domain"]
        + " is verified in the tenant and no selected user has its azureoid; " + who
    )
    return _changes(
        contacts.assign(user_id=found["user_key"]), "deactivate", reason, False,
        (_json({"id": int(c), "inactive": True}) for c in contacts["contact_id"]), evidence,
    )


# ---------------------------------------------------------------- the whole plan


def plan_contact_changes(
    company_mappings: pd.DataFrame,
    users: pd.DataFrame,
    domains: pd.DataFrame,
    contacts: pd.DataFrame,
    sites: pd.DataFrame,
    settings: SyncSettings,
) -> pd.DataFrame:
    """`contact_changes`: every planned action for the matched tenants whose users loaded,
    with the deactivation guard applied."""
    tenants = actionable_tenants(company_mappings)
    all_users = tenant_users(users, tenants, settings)
    selected = all_users.loc[all_users["selected"]]
    company_contacts = tenant_contacts(contacts, tenants)

    links = link_by_azureoid(selected, company_contacts)
    linked = _in_pairs(selected, ["tenant_id", "user_id"], links, ["tenant_id", "user_id"])
    email_candidates = pair_by_email(selected.loc[~linked], company_contacts, all_users)
    matched_by_email = _in_pairs(selected, ["tenant_id", "user_id"], email_candidates, ["tenant_id", "user_id"])
    to_create = selected.loc[~linked & ~matched_by_email]
    if not settings.create_contacts:
        to_create = to_create.iloc[0:0]
    # A contact any tenant links, pairs or finds ambiguous is never deactivated, even when its
    # company is mapped to several tenants.
    handled = pd.concat([links["contact_id"], email_candidates["contact_id"]])

    parts = [
        plan_reactivations(links),
        plan_updates(links, settings),
        plan_pairs(email_candidates),
        plan_creates(to_create, sites),
        plan_deactivations(company_contacts, all_users, domains, handled, settings),
    ]
    changes = pd.concat([p for p in parts if not p.empty] or [parts[0]], ignore_index=True)
    # Seen once per tenant of a company claimed by several tenants: one deactivation is enough.
    deactivate = changes["action"] == "deactivate"
    changes = changes.loc[~(deactivate & changes.duplicated(["action", "contact_id"]))]
    changes = changes.merge(tenants, on=["tenant_id", "company_id"], how="left")[CHANGE_COLUMNS]
    changes = changes.sort_values(["tenant_id", "action", "contact_id", "user_id"], ignore_index=True)
    return apply_deactivation_guard(changes, contacts, settings)
