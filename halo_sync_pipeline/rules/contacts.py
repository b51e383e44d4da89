"""What to do with each Halo contact of a matched company (`contact_changes`).

Per matched tenant whose users loaded, for its selected users and its company's contacts:
`link_by_azureoid` → reactivate / update, else `email_candidates` (any of the user's addresses) →
pair / ambiguous, else `plan_creates`; then `plan_deactivations` for the company's remaining active
contacts, the deactivation guard, and a last safety net. Every row says why it exists (`reason`,
`evidence`) and, when held, why it is held and what releases it (`hold_reason`).

One contact, one owner: a contact whose azureoid is the id of a user loaded from *any* tenant belongs
to that user's tenant (`contact_owners`). No other tenant pairs, reactivates or deactivates it, and
every contact gets at most one action by construction (`plan_deactivations` picks one tenant per
contact); `hold_contacts_acted_on_twice` holds the tenants involved should that ever break.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from halo_sync_pipeline.rules.guard import apply_deactivation_guard, is_general_user
from halo_sync_pipeline.rules.normalise import clean_text_for_halo, email_domains, keep_active_equals
from halo_sync_pipeline.rules.users import select_users
from halo_sync_pipeline.schemas.plan import CONTACT_CHANGE_COLUMNS, MATCHED_METHODS, Action
from halo_sync_pipeline.settings import SyncSettings

CHANGE_COLUMNS = CONTACT_CHANGE_COLUMNS
# Halo contact field <- Microsoft 365 user column (users' `surname` is renamed to avoid the clash).
UPDATED_FIELDS = {
    "firstname": "given_name",
    "surname": "user_surname",
    "name": "display_name",
    "phonenumber": "business_phone",
    "mobilenumber": "mobile_phone",
}
CONTACT_ADDRESS_COLUMNS = ("email", "email2", "email3")
DEACTIVATION_OFF_HOLD = "deactivate_contacts is off"
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
    """Trimmed, lower-cased text, NA when blank: the form every key is compared in. One pass over the
    values (three pandas string passes cost twice as much at 200k users). A value already in that form
    is kept as the same object, not copied: ids and addresses mostly are, and 200k copies cost ~17 MiB."""
    if not isinstance(values.dtype, pd.StringDtype):
        values = values.astype("string")
    keys = [
        ((text if key == text else key) if (key := text.strip().lower()) else None) if isinstance(text, str) else None
        for text in values.to_numpy(object)
    ]
    return pd.Series(keys, index=values.index, dtype="string")


# ---------------------------------------------------------------- key codes

NO_CODE = -1
CODE_DTYPE = np.int32  # codes of up to 2^31 distinct values; half the memory of int64 on 600k addresses


def unique_index(values: pd.Series) -> pd.Index:
    """The distinct values (missing ones left out), in order of first appearance: an index for `codes_in`."""
    return pd.Index(pd.unique(values.dropna().to_numpy(object)), dtype=object)


def codes_in(index: pd.Index, values: pd.Series) -> np.ndarray:
    """Each value's position in `index` (unique values), or NO_CODE when missing or not in it."""
    codes: np.ndarray = index.get_indexer(values.to_numpy(object)).astype(CODE_DTYPE)
    return codes


def pair_codes(major: np.ndarray, minor: np.ndarray, minor_size: int) -> np.ndarray:
    """One int64 code per (major, minor) pair of codes; NO_CODE when either is NO_CODE. Codes and Halo's
    ids (int32 in Halo's API) are below 2^31, so major × minor_size + minor cannot overflow."""
    pairs: np.ndarray = major.astype(np.int64) * minor_size + minor
    pairs[(major == NO_CODE) | (minor == NO_CODE)] = NO_CODE
    return pairs


def among(codes: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Per code: is it among `known`? NO_CODE never is."""
    found: np.ndarray = (pd.Index(pd.unique(known)).get_indexer(codes) >= 0) & (codes != NO_CODE)
    return found


def shared_codes(first: pd.Series, second: pd.Series) -> tuple[np.ndarray, np.ndarray, int]:
    """(codes of `first`, codes of `second`, how many distinct values `first` has): equal values get equal
    codes; a value of `second` that is not in `first` gets NO_CODE. No index is kept: a hash table over
    600k addresses would cost tens of MiB for the whole plan."""
    codes = pd.factorize(pd.concat([first, second], ignore_index=True))[0].astype(CODE_DTYPE)
    first_codes, second_codes = codes[: len(first)], codes[len(first) :]
    # factorize numbers values in order of first appearance (missing ones: -1), so `first`'s distinct
    # values take the codes 0 to n_first - 1 and a value new in `second` a code above.
    n_first = int(first_codes.max()) + 1 if len(first) else 0
    second_codes[second_codes >= n_first] = NO_CODE
    return first_codes, second_codes, n_first


@dataclass(frozen=True)
class KeyCodes:
    """Integer codes of the plan's string keys, made once per plan: tenant ids, user keys (a user's id,
    and a contact's azureoid) and addresses. `tenants` maps a tenant code back to its id; `n_users` and
    `n_addresses` count the codes.

    The plan joins users, their addresses and contacts some twenty times on these keys. On Python
    strings each join hashes every value again (most of the plan's time at 2,000 tenants); on codes it
    is an integer join. A value without a code (NO_CODE) matches nothing."""

    tenants: pd.Index
    n_users: int
    n_addresses: int

    def tenant_user(self, tenant_codes: np.ndarray, user_codes: np.ndarray) -> np.ndarray:
        return pair_codes(tenant_codes, user_codes, self.n_users)

    def tenant_address(self, tenant_codes: np.ndarray, address_codes: np.ndarray) -> np.ndarray:
        return pair_codes(tenant_codes, address_codes, self.n_addresses)


def keyed_users(users: pd.DataFrame, settings: SyncSettings) -> pd.DataFrame:
    """Every loaded user of every tenant with its selection (`select_users`) and match keys."""
    found = select_users(users, settings)
    missing = found["user_id"].isna() | found["upn"].isna()
    if missing.any():
        bad = found.loc[missing, ["tenant_id", "user_id", "upn"]].head(5).to_dict("records")
        raise ValueError(f"m365_users rows without user_id or upn (first {len(bad)}): {bad}")
    found = found.rename(columns={"surname": "user_surname"})
    return found.assign(user_key=_key(found["user_id"]))


def user_addresses(users: pd.DataFrame, carry: Sequence[str] = ()) -> pd.DataFrame:
    """One row per (tenant_id, user_key, address): the UPN, `mail` and every smtp proxy address,
    trimmed and lower-cased, plus the user's `carry` columns. UPN ≠ primary SMTP is common after renames
    and in hybrid setups.

    The UPN rows come first, then `mail`, then the aliases, each address once per user. Built in one pass
    over plain lists: the pandas version (split, explode, three string passes) peaked at +200 MiB on 200k users."""
    # Per kind (UPN, mail, aliases): the users' row positions and their addresses, as plain lists.
    parts: tuple[tuple[list[int], list[str]], ...] = (([], []), ([], []), ([], []))
    (upn_rows, upn_found), (mail_rows, mail_found), (alias_rows, alias_found) = parts
    rows = zip(users["upn"].tolist(), users["mail"].tolist(), users["smtp_aliases"].tolist())
    for position, (upn, mail, aliases) in enumerate(rows):
        # An address already trimmed and lower-case stays the frame's own object, not a copy of it.
        upn_address = (upn if (key := upn.strip().lower()) == upn else key) if isinstance(upn, str) else ""
        if upn_address:
            upn_rows.append(position)
            upn_found.append(upn_address)
        mail_address = (mail if (key := mail.strip().lower()) == mail else key) if isinstance(mail, str) else ""
        if mail_address and mail_address != upn_address:
            mail_rows.append(position)
            mail_found.append(mail_address)
        if isinstance(aliases, str):
            seen = {upn_address, mail_address}
            for raw in aliases.split(";"):
                address = raw.strip().lower()
                if address and address not in seen:
                    seen.add(address)
                    alias_rows.append(position)
                    alias_found.append(address)
    taken = [position for part in parts for position in part[0]]
    found = pd.DataFrame(
        {
            "tenant_id": users["tenant_id"].take(taken).astype("string"),
            "user_key": users["user_key"].take(taken).astype("string"),
            **{column: users[column].take(taken) for column in carry},
        }
    ).reset_index(drop=True)
    found.insert(2, "address", pd.Series([a for part in parts for a in part[1]], dtype="string"))
    if users.duplicated(["tenant_id", "user_key"]).any():  # never from Graph; each address still once
        found = found.drop_duplicates(["tenant_id", "user_key", "address"]).reset_index(drop=True)
    return found


def contact_owners(contacts: pd.DataFrame, users: pd.DataFrame, keys: KeyCodes) -> pd.DataFrame:
    """`contacts` plus `owner_tenant` / `owner_user`: the tenant and user whose id is the contact's
    azureoid, among the users loaded from any tenant (NA when nobody owns it), and `owner_code`. The
    contacts carry `oid_key` and `oid_code`, the users `tenant_code` and `user_code`."""
    oid_key, oid_code = contacts["oid_key"], contacts["oid_code"].to_numpy()
    # A user key listed in several tenants (never from Graph) belongs to the first. Both lookup arrays end
    # in a "nobody" entry, which NO_CODE (-1) picks.
    user_codes, first_rows = np.unique(users["user_code"].to_numpy(), return_index=True)
    tenant_of_user = np.full(keys.n_users + 1, NO_CODE, dtype=CODE_DTYPE)
    tenant_of_user[user_codes] = users["tenant_code"].to_numpy()[first_rows]
    owner_code = tenant_of_user[oid_code]
    owned = owner_code != NO_CODE
    tenant_ids = np.array([*keys.tenants, None], dtype=object)
    owner = pd.Series(tenant_ids[owner_code], index=contacts.index, dtype="string")
    return contacts.assign(
        owner_tenant=owner.where(owned), owner_user=oid_key.where(owned).astype("string"), owner_code=owner_code
    )


def contact_addresses(contacts: pd.DataFrame) -> pd.DataFrame:
    """One row per (contact_id, address) of a contact's emailaddress, email2 and email3."""
    parts = [
        contacts[["contact_id"]].assign(address=_key(contacts[column]), field=column)
        for column in CONTACT_ADDRESS_COLUMNS
    ]
    found = pd.concat(parts, ignore_index=True).dropna(subset=["address"])
    return found.drop_duplicates(["contact_id", "address"]).reset_index(drop=True)


def _changes(
    frame: pd.DataFrame,
    action: str,
    reason: object,
    hold_reason: object,
    body: Iterable[Any],
    evidence: object,
    contact_fields: bool = True,
) -> pd.DataFrame:
    """Change rows (without tenant/company names) for `frame`'s rows; held iff `hold_reason` is set."""
    source = (
        {"name": "name", "email": "email", "phonenumber": "phonenumber", "mobilenumber": "mobilenumber"}
        if contact_fields
        else {
            "name": "display_name",
            "email": "mail_or_upn",
            "phonenumber": "business_phone",
            "mobilenumber": "mobile_phone",
        }
    )
    hold = (
        pd.Series(hold_reason, index=frame.index, dtype="string")
        if not isinstance(hold_reason, pd.Series)
        else hold_reason
    )
    out = pd.DataFrame(
        {
            "tenant_id": frame["tenant_id"].astype("string"),
            "company_id": frame["company_id"].astype("int64"),
            "contact_id": pd.array(frame["contact_id"] if contact_fields else [pd.NA] * len(frame), dtype="Int64"),
            "user_id": frame["user_id"].astype("string") if "user_id" in frame else pd.NA,
            "action": str(action),  # the vocabulary's plain text in the frame
            "held": hold.notna().to_numpy(),
            "reason": reason,
            "hold_reason": hold.astype("string"),
            **{column: frame[src].astype("string") for column, src in source.items()},
            "body": pd.Series(list(body), index=frame.index, dtype="string"),
            "evidence": evidence,
        },
        index=frame.index,
    )
    return out.astype(
        {
            "user_id": "string",
            "action": "string",
            "reason": "string",
            "evidence": "string",
            "held": bool,
            "hold_reason": "string",
        }
    )


def _json(body: Mapping[str, object]) -> str:
    return json.dumps(body, ensure_ascii=False)


def _quarantine_hold(contacts: pd.DataFrame) -> pd.Series:
    return (
        "contact "
        + contacts["contact_id"].astype("string")
        + " is quarantined ("
        + contacts["quarantine"].astype("string")
        + "): it is never written; fix the record in Halo to release"
    )


# ---------------------------------------------------------------- linked by azureoid


def link_by_azureoid(selected_users: pd.DataFrame, contacts: pd.DataFrame) -> pd.DataFrame:
    """(user, contact) pairs where the company's contact's azureoid is the selected user's id."""
    users = selected_users.drop(columns=["company_id"])
    return users.merge(
        contacts.drop(columns=["tenant_id"]), left_on=["tenant_code", "user_code"], right_on=["tenant_code", "oid_code"]
    )


def plan_reactivations(links: pd.DataFrame) -> pd.DataFrame:
    """`reactivate` for a user whose linked contacts are all inactive (the highest contact id); held
    when that contact is quarantined."""
    any_active = (~links["inactive"]).groupby([links["tenant_id"], links["user_id"]]).transform("any")
    inactive_only = links.loc[~any_active].sort_values("contact_id")
    chosen = inactive_only.drop_duplicates(["tenant_id", "user_id"], keep="last")
    quarantined = chosen["quarantine"].notna()
    bodies = (_json({"id": int(c), "inactive": False}) for c in chosen["contact_id"])
    evidence = (
        "inactive contact "
        + chosen["contact_id"].astype("string")
        + " has azureoid "
        + chosen["user_key"]
        + " of selected user "
        + chosen["upn"]
    )
    hold = _quarantine_hold(chosen).where(quarantined)
    return _changes(chosen, Action.REACTIVATE, "azureoid_matches_user", hold, bodies, evidence)


def _cleaned(value: object) -> tuple[object, str | None]:
    cleaned, note = clean_text_for_halo(value)
    return (pd.NA if cleaned is None else cleaned), note


def plan_updates(links: pd.DataFrame, settings: SyncSettings) -> pd.DataFrame:
    """`update` of an active linked contact whose mapped fields differ from the user's, when
    `update_contact_fields` is on. A blank Microsoft 365 value never overwrites a Halo value; values
    are cleaned for Halo first (`clean_text_for_halo`)."""
    active = links.loc[~links["inactive"] & links["quarantine"].isna()]
    if not settings.update_contact_fields or active.empty:
        return _changes(active.iloc[0:0], Action.UPDATE, "fields_differ", pd.NA, [], "")
    changed = pd.DataFrame(index=active.index)
    cut_notes: dict[object, list[str]] = {}
    for field, source in UPDATED_FIELDS.items():
        values: list[object] = []
        for index, value in zip(active.index, active[source]):
            cleaned, note = _cleaned(value)
            values.append(cleaned)
            if note:
                cut_notes.setdefault(index, []).append(f"{field}: {note}")
        new = pd.Series(values, index=active.index, dtype="string")
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
            + "".join(f"; {note}" for note in cut_notes.get(index, []))
        )
    return _changes(rows, Action.UPDATE, "fields_differ", pd.NA, bodies, pd.Series(evidence, index=rows.index))


def _text(value: object) -> str:
    return "" if pd.isna(value) else str(value)


# ---------------------------------------------------------------- paired by address


def email_candidates(
    unlinked_users: pd.DataFrame, contacts: pd.DataFrame, addresses: pd.DataFrame, contact_emails: pd.DataFrame
) -> pd.DataFrame:
    """(user, contact) candidates: an unowned contact of the user's company (azureoid empty or of no
    loaded user) carrying one of the user's addresses in emailaddress, email2 or email3, with
    `matched_address` and `n_candidates` per user. Quarantined contacts are candidates too: their
    addresses must block a duplicate create."""
    unowned = contacts.loc[contacts["owner_tenant"].isna()]
    hits = _address_hits(unlinked_users, unowned, addresses, contact_emails)
    hits = hits.sort_values(["tenant_code", "user_code", "contact_id", "address"])
    hits = hits.groupby(["tenant_code", "user_code", "contact_id"], as_index=False).agg(
        matched_address=("address", ", ".join)
    )
    users = unlinked_users.drop(columns=["company_id"])
    found = users.merge(hits, on=["tenant_code", "user_code"]).merge(
        unowned.drop(columns=["tenant_id"]), on=["tenant_code", "contact_id"]
    )
    found["n_candidates"] = found.groupby(["tenant_id", "user_id"])["contact_id"].transform("size")
    return found


def _address_hits(
    users: pd.DataFrame, contacts: pd.DataFrame, addresses: pd.DataFrame, contact_emails: pd.DataFrame
) -> pd.DataFrame:
    """(tenant_code, user_code, address, contact_id) where a contact seen by the tenant carries one of the
    user's addresses, plus the contacts' `owner_user`."""
    wanted = users[["tenant_id", "user_key", "tenant_code", "user_code"]].merge(
        addresses[["tenant_code", "user_code", "address_code", "address"]], on=["tenant_code", "user_code"]
    )
    carried = contacts[["tenant_code", "contact_id", "owner_user"]].merge(
        contact_emails.loc[contact_emails["address_code"] != NO_CODE, ["contact_id", "address_code"]], on="contact_id"
    )
    return wanted.merge(carried, on=["tenant_code", "address_code"])


def plan_pairs(candidates: pd.DataFrame) -> pd.DataFrame:
    """`pair` (set azureoid, inactive=false) for a user's only candidate; `ambiguous` (held, no body)
    on every candidate of a user with several. A user's only candidate that is quarantined is not
    paired: `plan_creates` holds the user's create instead."""
    single = candidates.loc[(candidates["n_candidates"] == 1) & candidates["quarantine"].isna()]
    old_oid = ("its azureoid " + single["oid_key"] + " is no loaded user's").fillna("its azureoid is empty")
    pairs = _changes(
        single,
        Action.PAIR,
        "email_matches_upn",
        pd.NA,
        (
            _json({"id": int(c), "azureoid": u, "inactive": False})
            for c, u in zip(single["contact_id"], single["user_key"])
        ),
        "contact "
        + single["contact_id"].astype("string")
        + " carries "
        + single["matched_address"]
        + ", an address (UPN, mail or smtp alias) of selected user "
        + single["upn"]
        + "; "
        + old_oid,
    )
    several = candidates.loc[candidates["n_candidates"] > 1]
    ids = several.groupby(["tenant_id", "user_id"])["contact_id"].transform(lambda s: ", ".join(map(str, sorted(s))))
    hold = (
        "ambiguous: contacts "
        + ids.astype("string")
        + " all carry addresses of user "
        + several["upn"]
        + "; give the right one the user's azureoid ("
        + several["user_key"]
        + ") in Halo, or remove the address "
        "from the others, to release"
    )
    ambiguous = _changes(
        several,
        Action.AMBIGUOUS,
        "several_contacts_match_upn",
        hold,
        [pd.NA] * len(several),
        "contact "
        + several["contact_id"].astype("string")
        + " carries "
        + several["matched_address"]
        + " of selected user "
        + several["upn"]
        + " and so do other contacts of the company: none is written "
        "and no contact is created",
    )
    return pd.concat([pairs, ambiguous])


# ---------------------------------------------------------------- created


def choose_site(users: pd.DataFrame, sites: pd.DataFrame) -> pd.DataFrame:
    """Per user (same index): `site_id` (Int64, NA when none) and `site_evidence`.

    The company's site whose address line 1 equals the user's street address (case-insensitive,
    trimmed; highest site id on ties), else the company's main site (highest id if several).
    Quarantined sites get no new contacts."""
    if "quarantine" in sites:
        sites = sites.loc[sites["quarantine"].isna()]
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
        "site "
        + by_address["site_id"].astype("string")
        + " "
        + ('"' + by_address["name"] + '"').fillna("")
        + ': address line 1 "'
        + by_address["line1"]
        + "\" = the user's street address"
    ).reindex(users.index)
    main_note = (
        "site " + main_site.astype("string") + " " + ('"' + main_name + '"').fillna("") + ": the company's main site"
    ).astype("string")
    count = users["company_id"].map(site_count).fillna(0).astype("int64")
    no_site_note = pd.Series("the company has no usable site", index=users.index, dtype="string").mask(
        count > 0,
        "the company has "
        + count.astype("string")
        + " usable site(s) but no main site and none at the user's street address",
    )
    evidence = address_note.fillna(main_note).fillna(no_site_note)
    return pd.DataFrame({"site_id": site_id, "site_evidence": evidence.astype("string")}, index=users.index)


def _is_onmicrosoft(address: str) -> bool:
    return address.endswith(".onmicrosoft.com")


def primary_email(mail: object, upn: object) -> str:
    """A new contact's `emailaddress`: the user's mail when set, else the UPN (lower-case, trimmed)."""
    for value in (mail, upn):
        if not pd.isna(value) and str(value).strip():
            return str(value).strip().lower()
    return ""


def secondary_emails(smtp_aliases: object, upn: object, primary: str) -> list[str]:
    """email2/email3 candidates in order: the UPN first (when it differs from the primary address and is
    not `*.onmicrosoft.com`), then the smtp aliases in Graph's order. Plain addresses only (seed bug: it
    also took `sip:` and `x500:`), never `*.onmicrosoft.com`, never the primary address, no repeats."""
    candidates = [] if pd.isna(upn) else [str(upn)]
    if not pd.isna(smtp_aliases):
        candidates += str(smtp_aliases).split(";")
    found: list[str] = []
    for candidate in candidates:
        address = candidate.strip().lower()
        if (
            _PLAIN_ADDRESS.match(address)
            and not _is_onmicrosoft(address)
            and address != primary
            and address not in found
        ):
            found.append(address)
    return found


CREATE_TEXT_FIELDS = ("name", "firstname", "surname", "title", "phonenumber", "mobilenumber", "fax")


def create_contact_body(
    user: Mapping[str, object], company_id: int, site_id: int | None
) -> tuple[dict[str, object], list[str]]:
    """(POST /api/Users element creating the contact, notes on cleaned values). Halo's real field names
    (seed bug: it sent `companyID`/`lastName`, which Halo silently drops); text from Microsoft 365 is
    cleaned and capped (`clean_text_for_halo`); blank fields are omitted."""
    primary = primary_email(user["mail"], user["upn"])
    aliases = secondary_emails(user["smtp_aliases"], user["upn"], primary)
    raw = {
        "name": user["display_name"],
        "firstname": user["given_name"],
        "surname": user["user_surname"],
        "title": user["job_title"],
        "phonenumber": user["business_phone"],
        "mobilenumber": user["mobile_phone"],
        "fax": user["fax"],
    }
    body: dict[str, object] = {
        "client_id": int(company_id),
        "site_id": None if site_id is None or pd.isna(site_id) else int(site_id),
    }
    notes: list[str] = []
    for field in CREATE_TEXT_FIELDS:
        cleaned, note = clean_text_for_halo(raw[field])
        body[field] = cleaned
        if note:
            notes.append(f"{field}: {note}")
    body |= {
        "emailaddress": primary,
        "email2": aliases[0] if aliases else None,
        "email3": aliases[1] if len(aliases) > 1 else None,
        "azureoid": user["user_key"],
    }
    return {field: value for field, value in body.items() if not _blank(value)}, notes


def _blank(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, str) and not value.strip())


BODY_USER_COLUMNS = [
    "upn",
    "mail",
    "smtp_aliases",
    "display_name",
    "given_name",
    "user_surname",
    "job_title",
    "business_phone",
    "mobile_phone",
    "fax",
    "user_key",
]


def create_holds(users: pd.DataFrame, blockers: pd.DataFrame, moved: pd.DataFrame) -> pd.Series:
    """Per user to create (same index): why the create is held, or NA.

    - `blockers` (tenant_id, user_key, contact_id, company_id, matched_address, why): a contact of the
      company carries one of the user's addresses but cannot be paired (quarantined, or linked to another
      user): creating would give the company a second contact with that address.
    - `moved` (user_key, contact_id, company_id, company_name): an active contact in another company
      already has the user's azureoid (a person who moved): a create would make a second one."""
    hold = pd.Series(pd.NA, index=users.index, dtype="string")
    keyed = users[["tenant_id", "user_key"]].reset_index(names="row")
    blocked = keyed.merge(blockers, on=["tenant_id", "user_key"])
    if not blocked.empty:
        text = (
            "contact "
            + blocked["contact_id"].astype("string")
            + " of this company carries "
            + blocked["matched_address"]
            + " but "
            + blocked["why"]
            + "; creating would duplicate it: resolve that contact in Halo to release"
        )
        hold = hold.fillna(text.groupby(blocked["row"]).agg(" | ".join).astype("string").reindex(users.index))
    moved_rows = keyed.merge(moved, on="user_key")
    moved_rows = moved_rows.loc[
        moved_rows["company_id"].to_numpy() != users.loc[moved_rows["row"], "company_id"].to_numpy()
    ]
    if not moved_rows.empty:
        text = (
            "moved person: active contact "
            + moved_rows["contact_id"].astype("string")
            + " of company "
            + moved_rows["company_id"].astype("string")
            + ' "'
            + moved_rows["company_name"].fillna("")
            + '"'
            + " already has this user's azureoid; deactivate or re-home it in Halo (or clear its azureoid) to release"
        )
        hold = hold.fillna(text.groupby(moved_rows["row"]).agg(" | ".join).astype("string").reindex(users.index))
    return hold


def plan_creates(users: pd.DataFrame, sites: pd.DataFrame, hold: pd.Series | None = None) -> pd.DataFrame:
    """`create` for each of `users` (selected, neither linked nor a pair candidate). Held with `hold`'s
    reason when given (see `create_holds`), else when the company has no usable site (`no_site`)."""
    site = choose_site(users, sites)
    # Plain dicts with None for missing values, built column-wise (DataFrame.to_dict boxes every value).
    columns = [[None if value is pd.NA else value for value in users[c].tolist()] for c in BODY_USER_COLUMNS]
    records = [dict(zip(BODY_USER_COLUMNS, values, strict=True)) for values in zip(*columns, strict=True)]
    bodies, notes = [], []
    for user, company_id, site_id in zip(records, users["company_id"], site["site_id"]):
        body, cleaned = create_contact_body(user, company_id, site_id)
        bodies.append(_json(body))
        notes.append("".join(f"; {note}" for note in cleaned))
    no_site = site["site_id"].isna()
    given_hold = pd.Series(pd.NA, index=users.index, dtype="string") if hold is None else hold
    site_hold = (
        "no site: " + site["site_evidence"] + "; add a site (or an invoice site) to the company in Halo to release"
    )
    hold_reason = given_hold.fillna(site_hold.where(no_site)).astype("string")
    addresses = users["mail"].astype("string").fillna(users["upn"])
    evidence = (
        "no contact has azureoid "
        + users["user_key"]
        + " or carries address "
        + addresses
        + "; "
        + site["site_evidence"]
        + pd.Series(notes, index=users.index, dtype="string")
    )
    reason = pd.Series("new_user", index=users.index, dtype="string").mask(no_site & given_hold.isna(), "no_site")
    with_primary = users.assign(mail_or_upn=[primary_email(m, u) for m, u in zip(users["mail"], users["upn"])])
    return _changes(with_primary, Action.CREATE, reason, hold_reason, bodies, evidence, contact_fields=False)


# ---------------------------------------------------------------- deactivated


def deactivation_candidates(
    contacts: pd.DataFrame,
    users: pd.DataFrame,
    addresses: pd.DataFrame,
    contact_emails: pd.DataFrame,
    handled_contact_ids: pd.Series,
    settings: SyncSettings,
    keys: KeyCodes,
) -> pd.DataFrame:
    """(tenant, contact) rows the tenant may deactivate: active, not quarantined, owned by nobody or by
    this tenant, not linked, paired or ambiguous, carrying no address of a selected user of any tenant
    of the company, not keep-active (`keep_active_equals`), not the General User, not an
    excluded-pattern user's."""
    user_pairs = keys.tenant_user(users["tenant_code"].to_numpy(), users["user_code"].to_numpy())
    address_users = keys.tenant_user(addresses["tenant_code"].to_numpy(), addresses["user_code"].to_numpy())
    excluded = users["excluded_by_pattern"].to_numpy()
    selected_addresses = addresses.loc[among(address_users, user_pairs[users["selected"].to_numpy()])]
    excluded_addresses = addresses.loc[among(address_users, user_pairs[excluded])]
    tenants_of_company = contacts[["tenant_code", "company_id"]].drop_duplicates()
    company_addresses = selected_addresses[["tenant_code", "address_code"]].merge(tenants_of_company, on="tenant_code")
    emails = contact_emails[["contact_id", "address_code"]].merge(
        contacts[["contact_id", "company_id", "tenant_code"]].drop_duplicates(), on="contact_id"
    )
    n_addresses = keys.n_addresses
    address_in_company = emails.loc[
        among(
            pair_codes(emails["company_id"].to_numpy(), emails["address_code"].to_numpy(), n_addresses),
            pair_codes(
                company_addresses["company_id"].to_numpy(), company_addresses["address_code"].to_numpy(), n_addresses
            ),
        )
    ]
    address_excluded = emails.loc[
        among(
            keys.tenant_address(emails["tenant_code"].to_numpy(), emails["address_code"].to_numpy()),
            keys.tenant_address(
                excluded_addresses["tenant_code"].to_numpy(), excluded_addresses["address_code"].to_numpy()
            ),
        )
    ]
    n_tenants = len(keys.tenants)
    tenant_code, owner_code = contacts["tenant_code"].to_numpy(), contacts["owner_code"].to_numpy()
    protected = (
        contacts["inactive"].to_numpy()
        | contacts["quarantine"].notna().to_numpy()
        | ((owner_code != NO_CODE) & (owner_code != tenant_code))
        | contacts["contact_id"].isin(handled_contact_ids).to_numpy()
        | contacts["contact_id"].isin(address_in_company["contact_id"]).to_numpy()
        | keep_active_equals(contacts["keep_active"], settings.keep_active_value).to_numpy()
        | is_general_user(contacts["name"], settings).to_numpy()
        | among(keys.tenant_user(tenant_code, contacts["oid_code"].to_numpy()), user_pairs[excluded])
        | among(
            pair_codes(contacts["contact_id"].to_numpy(), tenant_code, n_tenants),
            pair_codes(
                address_excluded["contact_id"].to_numpy(), address_excluded["tenant_code"].to_numpy(), n_tenants
            ),
        )
    )
    return contacts.loc[~protected.astype(bool)]


def plan_deactivations(
    contacts: pd.DataFrame,
    users: pd.DataFrame,
    addresses: pd.DataFrame,
    contact_emails: pd.DataFrame,
    domains: pd.DataFrame,
    handled_contact_ids: pd.Series,
    settings: SyncSettings,
    keys: KeyCodes,
) -> pd.DataFrame:
    """`deactivate` a candidate contact (see `deactivation_candidates`) whose azureoid is not a selected
    user's and whose email domain is verified in the tenant (reason: the user's filter reason, else
    `gone_from_m365`), or that has no email, phone or mobile (`no_contact_details`).

    A contact seen by several tenants of one company gets one row: its owner's, else the first tenant's
    (by id) that finds it gone. With `deactivate_contacts` off the rows stay, held, for the report."""
    candidates = deactivation_candidates(
        contacts, users, addresses, contact_emails, handled_contact_ids, settings, keys
    )
    # A contact protected in one tenant's view is protected: keep only contacts unprotected in every view.
    protected_somewhere = contacts.loc[~contacts.index.isin(candidates.index), "contact_id"]
    candidates = candidates.loc[~candidates["contact_id"].isin(protected_somewhere)]
    candidates = candidates.assign(domain=email_domains(candidates["email"]))
    verified = domains.loc[domains["is_verified"]]
    verified_domains = _key(verified["domain"])
    domain_index = unique_index(verified_domains)
    tenant_code = candidates["tenant_code"].to_numpy()
    selected = users.loc[users["selected"]]
    has_selected_user = among(
        keys.tenant_user(tenant_code, candidates["oid_code"].to_numpy()),
        keys.tenant_user(selected["tenant_code"].to_numpy(), selected["user_code"].to_numpy()),
    )
    at_verified_domain = among(
        pair_codes(tenant_code, codes_in(domain_index, candidates["domain"]), len(domain_index)),
        pair_codes(
            codes_in(keys.tenants, verified["tenant_id"]), codes_in(domain_index, verified_domains), len(domain_index)
        ),
    )
    gone = pd.Series(~has_selected_user & at_verified_domain, index=candidates.index)
    blank = [
        candidates[c].astype("string").str.strip().replace("", pd.NA).isna()
        for c in ("email", "phonenumber", "mobilenumber")
    ]
    no_details = ~gone & blank[0] & blank[1] & blank[2]
    acted = (gone | no_details).to_numpy()
    own = (candidates["owner_tenant"] == candidates["tenant_id"]).fillna(False).to_numpy()
    # Arrays, not Series: assigning a Series to an empty frame would adopt the Series' index.
    chosen = candidates.loc[acted].assign(gone=gone.to_numpy()[acted], own=own[acted])
    chosen = chosen.sort_values(["contact_id", "own", "gone", "tenant_id"], ascending=[True, False, False, True])
    chosen = chosen.drop_duplicates("contact_id", keep="first")
    off_hold = (
        pd.NA
        if settings.deactivate_contacts
        else (f"{DEACTIVATION_OFF_HOLD}: listed for review only; turn the setting on to deactivate")
    )
    gone_rows = chosen.loc[chosen["gone"]]
    blank_rows = chosen.loc[~chosen["gone"]]
    return pd.concat(
        [
            _gone_deactivations(gone_rows, users, addresses, contact_emails, off_hold),
            _changes(
                blank_rows.assign(user_id=pd.NA),
                Action.DEACTIVATE,
                "no_contact_details",
                off_hold,
                (_json({"id": int(c), "inactive": True}) for c in blank_rows["contact_id"]),
                "active contact " + blank_rows["contact_id"].astype("string") + " has no email, phone or mobile",
            ),
        ]
    )


def _gone_deactivations(
    contacts: pd.DataFrame, users: pd.DataFrame, addresses: pd.DataFrame, contact_emails: pd.DataFrame, hold: object
) -> pd.DataFrame:
    """Deactivations of contacts at a verified domain with no selected user; the reason is found by
    looking the contact up among all the tenant's users (azureoid first, then any address)."""
    lookup = users[["tenant_code", "user_code", "user_key", "upn", "filter_reason"]]
    # One row per user: a user listed twice in a tenant (never from Graph; the blocking schema check names
    # it) would otherwise give a contact two rows here. The address lookup below keeps one per contact too.
    one_per_user = lookup.drop_duplicates(["tenant_code", "user_code"])
    by_oid = (
        contacts[["tenant_code", "oid_code"]]
        .merge(one_per_user, left_on=["tenant_code", "oid_code"], right_on=["tenant_code", "user_code"], how="left")
        .set_index(contacts.index)
    )
    by_address = (
        contacts[["tenant_code", "contact_id"]]
        .reset_index(names="row")
        .merge(
            contact_emails.loc[contact_emails["address_code"] != NO_CODE, ["contact_id", "address_code"]],
            on="contact_id",
        )
        .merge(addresses[["tenant_code", "address_code", "user_code"]], on=["tenant_code", "address_code"])
        .merge(lookup, on=["tenant_code", "user_code"])
        .sort_values(["row", "user_key"])
        .drop_duplicates("row")
        .set_index("row")
    )
    columns = ["user_key", "upn", "filter_reason"]
    found = by_oid[columns].fillna(by_address[columns].reindex(contacts.index))
    reason = found["filter_reason"].astype("string").fillna("gone_from_m365")
    who = ("user " + found["upn"].astype("string") + " is " + reason).fillna(
        "no user of the tenant has azureoid "
        + contacts["oid_key"].fillna("(empty)")
        + " or address "
        + contacts["email"].astype("string").str.strip().str.lower()
    )
    evidence = (
        "active contact "
        + contacts["contact_id"].astype("string")
        + " email domain "
        + contacts["domain"]
        + " is verified in the tenant and no selected user has its azureoid or address; "
        + who
    )
    return _changes(
        contacts.assign(user_id=found["user_key"]),
        Action.DEACTIVATE,
        reason,
        hold,
        (_json({"id": int(c), "inactive": True}) for c in contacts["contact_id"]),
        evidence,
    )


# ---------------------------------------------------------------- safety net


def hold_contacts_acted_on_twice(changes: pd.DataFrame) -> pd.DataFrame:
    """Safety net: if one contact ever gets several unheld actions, every action of the tenants involved
    is held (never the whole estate). The rules above make it impossible; this keeps it so."""
    live = changes.loc[~changes["held"] & changes["contact_id"].notna()]
    twice = live.loc[live["contact_id"].duplicated(keep=False)]
    if twice.empty:
        return changes
    per_tenant = twice.groupby("tenant_id")["contact_id"].agg(lambda ids: ", ".join(map(str, sorted(set(ids)))))
    note = (
        "safety net: contact(s) " + per_tenant + " would get several actions; the tenant's actions are held "
        "until the plan is fixed (report it as a bug)"
    )
    hit = changes["tenant_id"].isin(per_tenant.index) & ~changes["held"]
    return changes.assign(
        held=changes["held"] | hit,
        hold_reason=changes["hold_reason"].mask(hit, changes["tenant_id"].map(note)).astype("string"),
    )


# ---------------------------------------------------------------- the whole plan


def _blockers(
    unlinked: pd.DataFrame,
    company_contacts: pd.DataFrame,
    addresses: pd.DataFrame,
    contact_emails: pd.DataFrame,
    candidates: pd.DataFrame,
) -> pd.DataFrame:
    """Contacts of a user's company that carry one of its addresses but cannot be paired with it: a
    quarantined sole candidate, or a contact owned by another user."""
    quarantined = candidates.loc[(candidates["n_candidates"] == 1) & candidates["quarantine"].notna()]
    quarantined = quarantined.assign(why="it is quarantined (" + quarantined["quarantine"].astype("string") + ")")
    owned = company_contacts.loc[
        company_contacts["owner_tenant"].notna(), ["tenant_code", "contact_id", "owner_user"]
    ]  # three columns, not a copy of every owned contact
    hits = _address_hits(unlinked, owned, addresses, contact_emails).rename(columns={"address": "matched_address"})
    hits = hits.loc[hits["owner_user"] != hits["user_key"]]
    hits = hits.assign(why="it is linked to another user (" + hits["owner_user"].astype("string") + ")")
    columns = ["tenant_id", "user_key", "contact_id", "matched_address", "why"]
    return pd.concat([quarantined[columns], hits[columns]], ignore_index=True).drop_duplicates(
        ["tenant_id", "user_key", "contact_id"]
    )


def _moved(contacts: pd.DataFrame, companies: pd.DataFrame | None) -> pd.DataFrame:
    """Active contacts owned by a user, with their company: a create for that user elsewhere is held."""
    owned = contacts.loc[contacts["owner_user"].notna() & ~contacts["inactive"]]
    names = companies.set_index("company_id")["name"] if companies is not None else pd.Series(dtype="string")
    return pd.DataFrame(
        {
            "user_key": owned["owner_user"],
            "contact_id": owned["contact_id"],
            "company_id": owned["company_id"],
            "company_name": owned["company_id"].map(names).astype("string"),
        }
    )


def _user_pairs(users: pd.DataFrame, keys: KeyCodes) -> np.ndarray:
    return keys.tenant_user(users["tenant_code"].to_numpy(), users["user_code"].to_numpy())


def plan_contact_changes(
    company_mappings: pd.DataFrame,
    users: pd.DataFrame,
    domains: pd.DataFrame,
    contacts: pd.DataFrame,
    sites: pd.DataFrame,
    settings: SyncSettings,
    companies: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """`contact_changes`: every planned action for the matched tenants whose users loaded, with the
    deactivation guard and the safety net applied. `companies` (optional) names moved persons' companies."""
    if "quarantine" not in contacts:
        contacts = contacts.assign(quarantine=pd.Series(pd.NA, index=contacts.index, dtype="string"))
    tenants = actionable_tenants(company_mappings)
    everyone = keyed_users(users, settings)
    oid_key = _key(contacts["azureoid"])
    user_code, oid_code, n_users = shared_codes(everyone["user_key"], oid_key)
    tenant_index = unique_index(pd.concat([everyone["tenant_id"], tenants["tenant_id"]]))
    everyone = everyone.assign(tenant_code=codes_in(tenant_index, everyone["tenant_id"]), user_code=user_code)
    addresses = user_addresses(everyone, carry=("tenant_code", "user_code"))
    contact_emails = contact_addresses(contacts)
    address_codes, email_codes, n_addresses = shared_codes(addresses["address"], contact_emails["address"])
    addresses["address_code"], contact_emails["address_code"] = address_codes, email_codes
    keys = KeyCodes(tenant_index, n_users, n_addresses)
    owned_contacts = contact_owners(contacts.assign(oid_key=oid_key, oid_code=oid_code), everyone, keys)
    del oid_key, user_code, oid_code, address_codes, email_codes  # the frames hold them now

    tenant_companies = tenants[["tenant_id", "company_id"]].assign(
        tenant_code=codes_in(keys.tenants, tenants["tenant_id"])
    )
    all_users = everyone.merge(tenant_companies[["tenant_code", "company_id"]], on="tenant_code")
    selected = all_users.loc[all_users["selected"]]
    # The matched companies' contacts, once per tenant mapped to the company.
    company_contacts = owned_contacts.merge(tenant_companies, on="company_id")
    moved = _moved(owned_contacts, companies)
    # Nothing below reads them (all_users and company_contacts carry what is needed).
    del everyone, owned_contacts

    links = link_by_azureoid(selected, company_contacts)
    linked = among(_user_pairs(selected, keys), _user_pairs(links, keys))
    unlinked = selected.loc[~linked]
    candidates = email_candidates(unlinked, company_contacts, addresses, contact_emails)
    pairable = candidates.loc[(candidates["n_candidates"] > 1) | candidates["quarantine"].isna()]
    matched_by_email = among(_user_pairs(unlinked, keys), _user_pairs(pairable, keys))
    to_create = unlinked.loc[~matched_by_email]
    if not settings.create_contacts:
        to_create = to_create.iloc[0:0]
    holds = create_holds(
        to_create,
        _blockers(to_create, company_contacts, addresses, contact_emails, candidates),
        moved,
    )
    # A contact any tenant links, pairs or finds ambiguous is never deactivated.
    handled = pd.concat([links["contact_id"], candidates["contact_id"]])

    parts = [
        plan_reactivations(links),
        plan_updates(links, settings),
        plan_pairs(candidates),
        plan_creates(to_create, sites, holds),
    ]
    # The deactivations make the plan's largest temporaries: free first what they do not read.
    del selected, links, unlinked, candidates, pairable, to_create, holds, moved
    parts.append(
        plan_deactivations(company_contacts, all_users, addresses, contact_emails, domains, handled, settings, keys)
    )
    changes = pd.concat([p for p in parts if not p.empty] or [parts[0]], ignore_index=True)
    changes = changes.merge(tenants, on=["tenant_id", "company_id"], how="left")[CHANGE_COLUMNS]
    changes = changes.sort_values(["tenant_id", "action", "contact_id", "user_id"], ignore_index=True)
    changes = apply_deactivation_guard(changes, contacts, settings)
    return hold_contacts_acted_on_twice(changes)
