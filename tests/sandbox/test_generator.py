"""The estate generator: determinism, realism, schema validity, and that each planted situation really is one.

Coverage is not taken on trust from the generator's tags: every tagged record is checked against the data
with an independent predicate written from the rules of issue 4.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import pytest

from halo_sync_pipeline.sandbox import generator
from halo_sync_pipeline.sandbox.cli import main as cli_main
from halo_sync_pipeline.sandbox.generator import (
    GENERAL_USER_NAME,
    KEEP_ACTIVE_FIELD,
    KEEP_ACTIVE_VALUE,
    MIN_TENANTS_FOR_FULL_COVERAGE,
    SITUATIONS,
    describe_coverage,
    generate_estate,
)

GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
PARTNER_TYPE = 2  # Halo's Microsoft Partner connection: the one the sync reads tenant mappings from


@cache
def _estate(tenants: int, users_per_tenant: int, seed: int) -> str:
    return json.dumps(generate_estate(tenants, users_per_tenant, seed), sort_keys=True)


def estate(tenants: int = 40, users_per_tenant: int = 12, seed: int = 3) -> dict[str, Any]:
    return json.loads(_estate(tenants, users_per_tenant, seed))


# --- an independent reading of an estate --------------------------------------------------------------------------


def _norm_name(name: str | None) -> str:
    return " ".join((name or "").lower().split())


def _oid(value: str | None) -> str:
    """An azureoid as an id: braces and case do not matter."""
    return (value or "").strip().strip("{}").lower()


def _website_host(website: str | None) -> str | None:
    """Issue 4's rule: lower-case, no scheme, port, path, query, trailing dot or literal leading 'www.'."""
    if not website or not website.strip():
        return None
    host = re.sub(r"^[a-z][a-z0-9+.-]*://", "", website.strip().lower())
    host = re.split(r"[/?#]", host, maxsplit=1)[0].split(":")[0].rstrip(".")
    return host.removeprefix("www.")


def _email(value: str | None) -> str:
    return (value or "").strip().lower()


def _domain(email: str) -> str:
    return email.rpartition("@")[2]


@dataclass
class Index:
    estate: dict[str, Any]
    tenants: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # lower id -> Graph user
    tenant_of_user: dict[str, str] = field(default_factory=dict)
    upns: dict[str, dict[str, Any]] = field(default_factory=dict)  # lower UPN -> Graph user
    clients: dict[int, dict[str, Any]] = field(default_factory=dict)
    sites: dict[int, dict[str, Any]] = field(default_factory=dict)
    contacts: dict[int, dict[str, Any]] = field(default_factory=dict)
    all_domains: set[str] = field(default_factory=set)
    addresses: dict[str, dict[str, Any]] = field(default_factory=dict)  # UPN, mail, smtp alias -> Graph user
    connection_types: dict[int | None, int] = field(default_factory=dict)  # details_id (None: default) -> type
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # "client:1", "site:2", "user:3"

    def __post_init__(self) -> None:
        for tenant in self.estate["m365"]["tenants"]:
            self.tenants[tenant["customerId"]] = tenant
            self.all_domains |= {d["id"] for d in tenant["domains"]}
            for user in tenant["users"]:
                self.users[user["id"].lower()] = user
                self.tenant_of_user[user["id"].lower()] = tenant["customerId"]
                self.upns[user["userPrincipalName"].lower()] = user
                for address in user_addresses(user):
                    self.addresses[address] = user
        self.clients = {c["id"]: c for c in self.estate["halo"]["clients"]}
        self.sites = {s["id"]: s for s in self.estate["halo"]["sites"]}
        self.contacts = {u["id"]: u for u in self.estate["halo"]["users"]}
        connections = self.estate["halo"].get("azure_connections") or [{"id": 1, "type": PARTNER_TYPE}]
        self.connection_types = {c["id"]: c["type"] for c in connections}
        self.connection_types[None] = PARTNER_TYPE  # an entry without details_id is a partner mapping
        for kind, records in (("client", self.clients), ("site", self.sites), ("user", self.contacts)):
            self.records |= {f"{kind}:{i}": r for i, r in records.items()}

    # Halo side
    def client_of(self, contact: dict[str, Any]) -> dict[str, Any]:
        return self.clients[self.sites[contact["site_id"]]["client_id"]]

    def sites_of(self, client: dict[str, Any]) -> list[dict[str, Any]]:
        return [s for s in self.sites.values() if s["client_id"] == client["id"]]

    def contacts_of(self, client: dict[str, Any]) -> list[dict[str, Any]]:
        site_ids = {s["id"] for s in self.sites_of(client)}
        return [c for c in self.contacts.values() if c["site_id"] in site_ids]

    def active_clients(self) -> list[dict[str, Any]]:
        return [c for c in self.clients.values() if not c.get("inactive")]

    # Microsoft 365 side
    def verified(self, tenant: dict[str, Any]) -> set[str]:
        return {d["id"] for d in tenant["domains"] if d["isVerified"]}

    def mappings(self, client: dict[str, Any]) -> list[str]:
        """The tenant ids the sync reads for the client: GUID entries under a partner connection."""
        return [t["azure_tenant_id"].lower() for t in client.get("azure_tenants") or []
                if GUID.fullmatch(t["azure_tenant_id"])
                and self.connection_types[t.get("details_id")] == PARTNER_TYPE]  # fmt: skip

    def mapped_clients(self, tenant: dict[str, Any]) -> list[dict[str, Any]]:
        return [c for c in self.clients.values() if tenant["customerId"].lower() in self.mappings(c)]

    def name_matches(self, tenant: dict[str, Any]) -> list[dict[str, Any]]:
        return [c for c in self.active_clients() if _norm_name(c["name"]) == _norm_name(tenant["displayName"])]

    def website_matches(self, hosts: set[str]) -> list[dict[str, Any]]:
        return [c for c in self.active_clients() if _website_host(c.get("website")) in hosts]

    def contact_domain_matches(self, tenant: dict[str, Any]) -> list[dict[str, Any]]:
        domains = self.verified(tenant)
        owners = {
            self.client_of(c)["id"] for c in self.contacts.values() if _domain(_email(c["emailaddress"])) in domains
        }
        return [self.clients[i] for i in sorted(owners) if not self.clients[i].get("inactive")]

    def reach(self, tenant: dict[str, Any]) -> dict[str, Any] | None:
        """The company rules 2-5 give an unmapped tenant: the first rule with candidates, if it has one."""
        for found in (self.name_matches(tenant), self.website_matches({tenant["defaultDomainName"]}),
                      self.website_matches(self.verified(tenant)), self.contact_domain_matches(tenant)):  # fmt: skip
            if found:
                return found[0] if len(found) == 1 else None
        return None

    def companies_of(self, tenant: dict[str, Any]) -> list[dict[str, Any]]:
        """The companies the tenant maps to, or the one rules 2-5 give it."""
        mapped = self.mapped_clients(tenant)
        reached = self.reach(tenant)
        return mapped or ([reached] if reached else [])

    def tenant_of(self, user: dict[str, Any]) -> dict[str, Any]:
        return self.tenants[self.tenant_of_user[user["id"].lower()]]

    def linked_user(self, contact: dict[str, Any]) -> dict[str, Any] | None:
        return self.users.get(_oid(contact.get("azureoid")))

    def is_gone(self, contact: dict[str, Any]) -> bool:
        email = _email(contact["emailaddress"])
        return (email != "" and email not in self.addresses and self.linked_user(contact) is None
                and _domain(email) in self.all_domains)  # fmt: skip


def selected(user: dict[str, Any]) -> bool:
    """Issue 4's default filters plus the admin UPN pattern on the local part."""
    return (bool(user["assignedLicenses"]) and user["accountEnabled"] and user["userType"] == "Member"
            and "admin" not in user["userPrincipalName"].split("@")[0].lower())  # fmt: skip


def user_addresses(user: dict[str, Any]) -> set[str]:
    """Every address of the user, lower case: UPN, mail and smtp: proxy addresses."""
    smtp = {p.partition(":")[2] for p in user.get("proxyAddresses") or [] if p.lower().startswith("smtp:")}
    return {a.strip().lower() for a in {user["userPrincipalName"], user.get("mail") or "", *smtp} if a.strip()}


def user_aliases(user: dict[str, Any]) -> set[str]:
    """Its smtp: addresses other than the UPN and the mail."""
    return user_addresses(user) - {user["userPrincipalName"].lower(), _email(user.get("mail"))}


def keep_active_value(contact: dict[str, Any]) -> str | None:
    return next((str(f["value"]) for f in contact.get("customfields") or [] if f["name"] == KEEP_ACTIVE_FIELD), None)


def means_keep_active(value: str | None) -> bool:
    """The keep-active value as a person means it: ' 2 ', '02' and '2.0' are 2."""
    try:
        return value is not None and float(value.strip()) == float(KEEP_ACTIVE_VALUE)
    except ValueError:
        return False


def _tenant_site_client(ix: Index, tenant: dict[str, Any]) -> dict[str, Any] | None:
    mapped = ix.mapped_clients(tenant)
    return mapped[0] if mapped else None


def _deactivations(ix: Index, client: dict[str, Any], tenant: dict[str, Any]) -> tuple[int, int]:
    active = [c for c in ix.contacts_of(client) if not c["inactive"]]
    gone = [c for c in active if ix.is_gone(c) and _domain(_email(c["emailaddress"])) in ix.verified(tenant)
            and not means_keep_active(keep_active_value(c)) and c.get("name") != GENERAL_USER_NAME]  # fmt: skip
    return len(gone), len(active)


def _emails_in(client_contacts: list[dict[str, Any]], email: str) -> list[dict[str, Any]]:
    return [c for c in client_contacts if _email(c["emailaddress"]) == email]


def _street_sites(ix: Index, user: dict[str, Any]) -> list[dict[str, Any]]:
    street = (user["streetAddress"] or "").strip().lower()
    tenant = ix.tenants[ix.tenant_of_user[user["id"].lower()]]
    clients = ix.mapped_clients(tenant) + ix.name_matches(tenant) + ix.website_matches(ix.verified(tenant))
    clients += ix.contact_domain_matches(tenant)
    return [s for c in clients for s in ix.sites_of(c) if (s.get("line1") or "").strip().lower() == street]


def _tenant_checks(ix: Index) -> dict[str, Callable[[dict[str, Any]], bool]]:
    def website(tenant: dict[str, Any], hosts: set[str]) -> bool:
        return len(ix.website_matches(hosts)) == 1

    no_map = lambda t: not ix.mapped_clients(t)  # noqa: E731
    no_name = lambda t: len(ix.name_matches(t)) != 1  # noqa: E731
    return {
        "match_tenant_id": lambda t: len(ix.mapped_clients(t)) >= 1,
        "match_name": lambda t: no_map(t) and len(ix.name_matches(t)) == 1,
        "match_default_domain_website": lambda t: no_map(t) and no_name(t) and website(t, {t["defaultDomainName"]}),
        "website_host_starts_with_www": lambda t: t["defaultDomainName"].startswith("www")
        and website(t, {t["defaultDomainName"]}),
        "match_verified_domain_website": lambda t: no_map(t) and no_name(t)
        and not ix.website_matches({t["defaultDomainName"]}) and website(t, ix.verified(t)),
        "match_contact_email_domain": lambda t: no_map(t) and no_name(t) and not ix.website_matches(ix.verified(t))
        and len(ix.contact_domain_matches(t)) == 1,
        "unmatched_ambiguous_name": lambda t: no_map(t) and len(ix.name_matches(t)) >= 2
        and not ix.website_matches(ix.verified(t)) and len(ix.contact_domain_matches(t)) != 1,
        "unmatched_no_candidate": lambda t: no_map(t) and not ix.name_matches(t)
        and not ix.website_matches(ix.verified(t)) and not ix.contact_domain_matches(t),
        "inactive_duplicate_company": lambda t: any(c.get("inactive") and _norm_name(c["name"]) == _norm_name(
            t["displayName"]) for c in ix.clients.values()),
        "tenant_shares_company": lambda t: any(len(ix.mappings(c)) >= 2 for c in ix.mapped_clients(t)),
        "client_without_site": lambda t: any(c["main_site_id"] is None and not ix.sites_of(c)
                                             for c in ix.mapped_clients(t)),
        "admin_in_domain_name": lambda t: "admin" in t["defaultDomainName"],
        "mass_deactivation": lambda t: (lambda d, a: d > max(10, 0.5 * a))(*_deactivations(ix, _tenant_site_client(ix, t), t)),
        "not_consented": lambda t: t["consented"] is False,
        "gdap_expired": lambda t: t["gdapStatus"] == "expired",
        "gdap_terminated": lambda t: t["gdapStatus"] == "terminated",
        "gdap_missing": lambda t: t["gdapStatus"] is None,
        "default_domain_onmicrosoft": lambda t: t["defaultDomainName"].endswith(".onmicrosoft.com")
        and [d["id"] for d in t["domains"] if d["isDefault"]] == [t["defaultDomainName"]],
        "unverified_domain": lambda t: any(not d["isVerified"] for d in t["domains"]),
        **_messy_tenant_checks(ix),
    }  # fmt: skip


def _messy_tenant_checks(ix: Index) -> dict[str, Callable[[dict[str, Any]], bool]]:
    def mapped_elsewhere(tenant: dict[str, Any]) -> bool:
        named = ix.name_matches(tenant)
        return (not ix.mapped_clients(tenant) and len(named) == 1
                and any(t not in {i.lower() for i in ix.tenants} for t in ix.mappings(named[0])))  # fmt: skip

    def shares_its_company(tenant: dict[str, Any]) -> bool:
        company = ix.reach(tenant)
        others = [t for t in ix.tenants.values() if t is not tenant and not ix.mapped_clients(t)]
        return (not ix.mapped_clients(tenant) and company is not None and not ix.mappings(company)
                and any(ix.reach(t) is company for t in others))  # fmt: skip

    def keeps_other_entry(tenant: dict[str, Any]) -> bool:
        named = ix.name_matches(tenant)
        return (not ix.mapped_clients(tenant) and len(named) == 1
                and any(ix.connection_types.get(e.get("details_id")) not in (None, PARTNER_TYPE)
                        for e in named[0]["azure_tenants"]))  # fmt: skip

    return {
        "conflict_mapped_elsewhere": mapped_elsewhere,
        "conflict_two_unmapped": shares_its_company,
        "mapped_company_inactive": lambda t: (
            bool(ix.mapped_clients(t))
            and all(c.get("inactive") for c in ix.mapped_clients(t))
            and len(ix.name_matches(t)) == 1
        ),
        "write_back_keeps_entries": keeps_other_entry,
        "licences_omitted": lambda t: "assignedLicenses" in (t.get("sandbox_omit_user_properties") or []),
        "not_consented_sam": lambda t: t["consented"] is False,
    }


def _contact_checks(ix: Index) -> dict[str, Callable[[dict[str, Any]], bool]]:
    def linked_to(contact: dict[str, Any], test: Callable[[dict[str, Any]], bool]) -> bool:
        user = ix.linked_user(contact)
        return user is not None and not contact["inactive"] and test(user)

    def pairable(contact: dict[str, Any]) -> bool:
        user = ix.upns.get(_email(contact["emailaddress"]))
        return user is not None and selected(user) and ix.linked_user(contact) is None

    def gone(contact: dict[str, Any]) -> bool:
        return not contact["inactive"] and ix.is_gone(contact)

    return {
        "linked": lambda c: linked_to(c, selected),
        "linked_oid_upper_case": lambda c: linked_to(c, selected) and c["azureoid"] != c["azureoid"].lower(),
        "linked_fields_differ": lambda c: linked_to(c, lambda u: c["phonenumber"] != (u["businessPhones"] or [""])[0]
                                                    or c["title"] != (u["jobTitle"] or "")),
        "pair_unlinked_same_email": lambda c: pairable(c) and not c["azureoid"]
        and len(_emails_in(ix.contacts_of(ix.client_of(c)), _email(c["emailaddress"]))) == 1,
        "pair_stale_azureoid": lambda c: pairable(c) and bool(c["azureoid"]),
        "reactivate_inactive": lambda c: c["inactive"] and ix.linked_user(c) is not None and selected(ix.linked_user(c)),
        "ambiguous_email": lambda c: pairable(c)
        and len(_emails_in(ix.contacts_of(ix.client_of(c)), _email(c["emailaddress"]))) >= 2,
        "leaver_unlicensed": lambda c: linked_to(c, lambda u: not u["assignedLicenses"] and u["accountEnabled"]),
        "leaver_disabled": lambda c: linked_to(c, lambda u: not u["accountEnabled"]),
        "leaver_guest": lambda c: linked_to(c, lambda u: u["userType"] == "Guest"
                                            and _email(c["emailaddress"]) == u["userPrincipalName"].lower()),
        "admin_contact_untouched": lambda c: linked_to(c, lambda u: "admin" in u["userPrincipalName"].split("@")[0]),
        "gone_from_m365": lambda c: gone(c) and keep_active_value(c) is None,
        "keep_active": lambda c: gone(c) and keep_active_value(c) == KEEP_ACTIVE_VALUE,
        "keep_active_other_value": lambda c: gone(c) and keep_active_value(c) not in (None, KEEP_ACTIVE_VALUE),
        "general_user": lambda c: c.get("name") == GENERAL_USER_NAME,
        "no_contact_details": lambda c: not c["inactive"] and not (c["emailaddress"] or c["phonenumber"]
                                                                   or c["mobilenumber"]),
        "external_email_contact": lambda c: bool(c["emailaddress"])
        and _domain(_email(c["emailaddress"])) not in ix.all_domains,
        "inactive_contact_gone": lambda c: c["inactive"] and ix.is_gone(c),
        **_messy_contact_checks(ix),
    }  # fmt: skip


def _messy_contact_checks(ix: Index) -> dict[str, Callable[[dict[str, Any]], bool]]:
    def owned_by_other_tenant(contact: dict[str, Any]) -> bool:
        user = ix.linked_user(contact)
        if user is None or contact["inactive"] or not selected(user):
            return False
        client, its_tenant = ix.client_of(contact), ix.tenant_of(user)
        own_tenants = [t for t in ix.tenants.values() if client in ix.companies_of(t)]
        return (bool(own_tenants) and its_tenant not in own_tenants
                and any(c is not client for c in ix.companies_of(its_tenant)))  # fmt: skip

    def oid_not_guid(contact: dict[str, Any]) -> bool:
        user = ix.addresses.get(_email(contact["emailaddress"]))
        return (not contact["inactive"] and bool(contact["azureoid"]) and not GUID.fullmatch(_oid(contact["azureoid"]))
                and user is not None and selected(user) and _email(contact["emailaddress"]) == _email(user["mail"])
                and ix.client_of(contact) in ix.companies_of(ix.tenant_of(user)))  # fmt: skip

    return {
        "contact_owned_by_other_tenant": owned_by_other_tenant,
        "keep_active_variants": lambda c: not c["inactive"] and ix.is_gone(c)
        and keep_active_value(c) != KEEP_ACTIVE_VALUE and means_keep_active(keep_active_value(c)),
        "contact_oid_not_guid": oid_not_guid,
        "contact_oid_braced": lambda c: re.fullmatch(r"\{[0-9A-F]{8}(-[0-9A-F]{4}){3}-[0-9A-F]{12}\}", c["azureoid"])
        is not None and not c["inactive"] and ix.linked_user(c) is not None and selected(ix.linked_user(c)),
    }  # fmt: skip


def _user_checks(ix: Index) -> dict[str, Callable[[dict[str, Any]], bool]]:
    def has_contact(user: dict[str, Any]) -> bool:
        return any(ix.linked_user(c) is user or _email(c["emailaddress"]) == user["userPrincipalName"].lower()
                   for c in ix.contacts.values())  # fmt: skip

    def non_main(site: dict[str, Any]) -> bool:
        return ix.clients[site["client_id"]]["main_site_id"] != site["id"]

    return {
        "create_new_contact": lambda u: selected(u) and not has_contact(u),
        "create_at_site_address": lambda u: selected(u) and not has_contact(u)
        and any(non_main(s) for s in _street_sites(ix, u)),
        "create_at_tied_site_address": lambda u: selected(u) and len(_street_sites(ix, u)) >= 2,
        "create_without_site": lambda u: selected(u) and any(
            not ix.sites_of(c) for c in ix.mapped_clients(ix.tenants[ix.tenant_of_user[u["id"].lower()]])),
        "user_with_aliases": lambda u: any(p.startswith("smtp:") and not p.endswith(".onmicrosoft.com")
                                           for p in u["proxyAddresses"]),
        "shared_mailbox_unlicensed": lambda u: not u["assignedLicenses"] and not u["accountEnabled"],
        "guest_user": lambda u: u["userType"] == "Guest" and "#EXT#@" in u["userPrincipalName"],
        "disabled_user": lambda u: not u["accountEnabled"],
        "admin_account": lambda u: "admin" in u["userPrincipalName"].split("@")[0],
        **_messy_user_checks(ix),
    }  # fmt: skip


def _messy_user_checks(ix: Index) -> dict[str, Callable[[dict[str, Any]], bool]]:
    def own_contacts(user: dict[str, Any], addresses: set[str]) -> list[dict[str, Any]]:
        """Contacts of the user's company carrying one of `addresses`; none may be linked to it."""
        companies = ix.companies_of(ix.tenant_of(user))
        return [c for company in companies for c in ix.contacts_of(company) if _email(c["emailaddress"]) in addresses]

    def unlinked(user: dict[str, Any]) -> bool:
        return selected(user) and not any(ix.linked_user(c) is user for c in ix.contacts.values())

    def mail_differs(user: dict[str, Any]) -> bool:
        mail, tenant = _email(user["mail"]), ix.tenant_of(user)
        found = own_contacts(user, {mail})
        return (unlinked(user) and user["userPrincipalName"].lower().endswith(".onmicrosoft.com")
                and _domain(mail) in ix.verified(tenant) and not mail.endswith(".onmicrosoft.com")
                and len(found) == 1 and not found[0]["inactive"]
                and not own_contacts(user, {user["userPrincipalName"].lower()}))  # fmt: skip

    def by_alias(user: dict[str, Any]) -> bool:
        found = own_contacts(user, user_addresses(user))
        return unlinked(user) and len(found) == 1 and _email(found[0]["emailaddress"]) in user_aliases(user)

    def by_aliases(user: dict[str, Any]) -> bool:
        found = {_email(c["emailaddress"]) for c in own_contacts(user, user_addresses(user))}
        return unlinked(user) and _email(user["mail"]) in found and bool(found & user_aliases(user))

    def moved(user: dict[str, Any]) -> bool:
        companies = ix.companies_of(ix.tenant_of(user))
        elsewhere = [c for c in ix.contacts.values() if ix.linked_user(c) is user]
        return (selected(user) and bool(companies) and not own_contacts(user, user_addresses(user))
                and bool(elsewhere) and all(not c["inactive"] and ix.client_of(c) not in companies
                                            for c in elsewhere))  # fmt: skip

    def dirty(user: dict[str, Any]) -> bool:
        given = user["givenName"] or ""
        return (unlinked(user) and not own_contacts(user, user_addresses(user))
                and len(user["displayName"]) >= 5000 and "\x00" in (user["surname"] or "")
                and "\u202e" in given and given != given.strip())  # fmt: skip

    return {"upn_differs_from_mail": mail_differs, "pair_by_proxy_alias": by_alias,
            "ambiguous_by_aliases": by_aliases, "moved_person": moved, "dirty_m365_values": dirty}  # fmt: skip


def _client_checks(ix: Index) -> dict[str, Callable[[dict[str, Any]], bool]]:
    tenant_hosts = ix.all_domains
    tenant_names = {_norm_name(t["displayName"]) for t in ix.tenants.values()}

    def invoice_sites(client: dict[str, Any]) -> list[int]:
        return sorted(s["id"] for s in ix.sites_of(client) if s.get("isinvoicesite") is True)

    return {
        "halo_only_client": lambda c: (
            not c["azure_tenants"]
            and _website_host(c["website"]) not in tenant_hosts
            and _norm_name(c["name"]) not in tenant_names
        ),
        "several_invoice_sites": lambda c: len(invoice_sites(c)) >= 2 and c["main_site_id"] == invoice_sites(c)[0],
        "mapping_tenant_not_guid": lambda c: any(not GUID.fullmatch(e["azure_tenant_id"]) for e in c["azure_tenants"]),
    }


def _record_checks(ix: Index) -> dict[str, Callable[[dict[str, Any]], bool]]:
    return {"missing_name": lambda r: not (r.get("name") or "").strip()}


def _checks_and_records(ix: Index) -> dict[str, tuple[dict[str, Callable[[Any], bool]], dict[Any, Any]]]:
    """Kind of id -> (the checks of situations listing that kind, the records by id)."""
    return {"tenant": (_tenant_checks(ix), ix.tenants), "contact": (_contact_checks(ix), ix.contacts),
            "user": (_user_checks(ix), ix.users), "client": (_client_checks(ix), ix.clients),
            "record": (_record_checks(ix), ix.records)}  # fmt: skip


def _check_planted(data: dict[str, Any]) -> dict[str, list[Any]]:
    """Situation -> ids tagged for it whose record does not show the situation."""
    ix = Index(data)
    checks = _checks_and_records(ix)
    wrong: dict[str, list[Any]] = {}
    for name, ids in data["_generator"]["situations"].items():
        predicates, records = checks[SITUATIONS[name][0]]
        key = (lambda i: i.lower()) if SITUATIONS[name][0] == "user" else (lambda i: i)
        bad = [i for i in ids if not predicates[name](records[key(i)])]
        if bad:
            wrong[name] = bad[:5]
    return wrong


# --- tests -------------------------------------------------------------------------------------------------------


def test_every_situation_has_an_independent_check() -> None:
    ix = Index(estate())
    checked = {
        **_tenant_checks(ix),
        **_contact_checks(ix),
        **_user_checks(ix),
        **_client_checks(ix),
        **_record_checks(ix),
    }
    assert set(checked) == set(SITUATIONS)


def test_no_check_is_true_of_every_record() -> None:
    """A check that holds for every record of its kind would pass whatever the generator planted."""
    ix = Index(estate(MIN_TENANTS_FOR_FULL_COVERAGE, 8, 7))
    vacuous = [name for kind, (checks, records) in _checks_and_records(ix).items() for name, check in checks.items()
               if all(check(r) for r in records.values())]  # fmt: skip
    assert vacuous == []


def test_same_seed_same_estate_other_seed_other_estate() -> None:
    assert json.dumps(generate_estate(15, 6, 11)) == json.dumps(generate_estate(15, 6, 11))
    assert json.dumps(generate_estate(15, 6, 11)) != json.dumps(generate_estate(15, 6, 12))


def test_generation_does_not_touch_global_random_state() -> None:
    import random

    random.seed(1234)
    expected = random.random()
    random.seed(1234)
    generate_estate(MIN_TENANTS_FOR_FULL_COVERAGE, 5, 1)
    assert random.random() == expected


@pytest.mark.parametrize(("tenants", "users", "seed"), [(MIN_TENANTS_FOR_FULL_COVERAGE, 1, 5),
                                                        (MIN_TENANTS_FOR_FULL_COVERAGE, 8, 7), (40, 12, 3),
                                                        (120, 30, 99)])  # fmt: skip
def test_every_situation_is_planted_and_really_is_that_situation(tenants: int, users: int, seed: int) -> None:
    data = estate(tenants, users, seed)
    coverage = describe_coverage(data)
    assert [name for name, count in coverage.items() if count == 0] == []
    assert _check_planted(data) == {}


def test_rare_situations_stay_rare_in_a_large_estate() -> None:
    data = estate(120, 30, 99)
    coverage = describe_coverage(data)
    tenants, contacts = len(data["m365"]["tenants"]), len(data["halo"]["users"])
    assert coverage["match_tenant_id"] > tenants / 2
    for rare in ("unmatched_ambiguous_name", "client_without_site", "mass_deactivation", "not_consented"):
        assert coverage[rare] < tenants * 0.1, rare
    assert coverage["linked"] > contacts / 2
    for rare in ("ambiguous_email", "leaver_guest", "keep_active", "no_contact_details"):
        assert coverage[rare] < contacts * 0.05, rare


def test_messy_situations_are_rare_in_a_large_estate() -> None:
    data = estate(120, 30, 99)
    coverage = describe_coverage(data)
    tenants, users = len(data["m365"]["tenants"]), sum(len(t["users"]) for t in data["m365"]["tenants"])
    for rare in (
        "conflict_mapped_elsewhere",
        "conflict_two_unmapped",
        "mapped_company_inactive",
        "write_back_keeps_entries",
        "licences_omitted",
        "several_invoice_sites",
        "mapping_tenant_not_guid",
    ):
        assert coverage[rare] < tenants * 0.1, rare
    for rare in (
        "upn_differs_from_mail",
        "pair_by_proxy_alias",
        "ambiguous_by_aliases",
        "moved_person",
        "dirty_m365_values",
        "contact_owned_by_other_tenant",
        "contact_oid_not_guid",
        "contact_oid_braced",
        "keep_active_variants",
    ):
        assert coverage[rare] < users * 0.03, rare
    assert coverage["missing_name"] == 3  # one nameless company, site and contact per 100 tenants


def test_conflict_pairs_are_complete_whatever_the_number_of_tenants() -> None:
    for tenants in range(MIN_TENANTS_FOR_FULL_COVERAGE - 4, MIN_TENANTS_FOR_FULL_COVERAGE + 1):
        data = estate(tenants, 2, 1)
        assert _check_planted(data).get("conflict_two_unmapped") is None
        assert len(data["_generator"]["situations"]["conflict_two_unmapped"]) % 2 == 0, tenants


def test_every_keep_active_spelling_and_every_nameless_kind_is_planted() -> None:
    data = estate(MIN_TENANTS_FOR_FULL_COVERAGE, 8, 7)
    ix = Index(data)
    spellings = {keep_active_value(ix.contacts[i]) for i in data["_generator"]["situations"]["keep_active_variants"]}
    assert spellings == {" 2 ", "02", "2.0"}
    nameless = data["_generator"]["situations"]["missing_name"]
    assert sorted(i.split(":")[0] for i in nameless) == ["client", "site", "user"]


def test_every_estate_has_the_partner_and_a_single_tenant_connection() -> None:
    for data in (estate(1, 1, 1), estate(MIN_TENANTS_FOR_FULL_COVERAGE, 8, 7)):
        assert data["halo"]["azure_connections"] == [{"id": 1, "name": "Microsoft Partner", "type": 2},
                                                     {"id": 2, "name": "Lantern IT Azure AD", "type": 1}]  # fmt: skip


def test_tenant_sizes_are_skewed_around_the_requested_mean() -> None:
    data = estate(200, 20, 8)
    sizes = [len(t["users"]) for t in data["m365"]["tenants"]]
    assert 18 <= statistics.mean(sizes) <= 22
    assert max(sizes) > 4 * statistics.median(sizes)
    assert min(sizes) >= 1


def test_microsoft_365_side_is_realistic() -> None:
    data = estate()
    tenants = data["m365"]["tenants"]
    for tenant in tenants:
        defaults = [d["id"] for d in tenant["domains"] if d["isDefault"]]
        assert defaults == [tenant["defaultDomainName"]], tenant["displayName"]
        assert any(d["id"].endswith(".onmicrosoft.com") for d in tenant["domains"])
        assert len(tenant["domains"]) >= 2
    users = [u for t in tenants for u in t["users"]]
    prefixes = Counter(p.split(":")[0] for u in users for p in u["proxyAddresses"])
    assert {"SMTP", "smtp", "sip", "x500"} <= set(prefixes)
    assert all(sum(p.startswith("SMTP:") for p in u["proxyAddresses"]) == 1 for u in users)
    ids = [u["id"] for u in users] + [t["customerId"] for t in tenants] + [data["m365"]["partner_tenant_id"]]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", i) for i in ids)
    upns = [u["userPrincipalName"].lower() for u in users]
    assert len(upns) == len(set(upns))
    local_parts = Counter(u["userPrincipalName"].split("@")[0] for u in users)
    assert local_parts["admin"] + local_parts["it.admin"] > 0


def test_halo_side_is_consistent() -> None:
    data = estate()
    clients, sites, contacts = data["halo"]["clients"], data["halo"]["sites"], data["halo"]["users"]
    site_client = {s["id"]: s["client_id"] for s in sites}
    for records in (clients, sites, contacts):
        ids = [r["id"] for r in records]
        assert all(isinstance(i, int) and not isinstance(i, bool) for i in ids) and len(ids) == len(set(ids))
    for client in clients:
        own = {s["id"] for s in sites if s["client_id"] == client["id"]}
        assert (client["main_site_id"] in own) if own else client["main_site_id"] is None, client["name"]
    assert sum(1 for c in clients if c["main_site_id"] is None) >= 1
    assert any(Counter(s["client_id"] for s in sites)[c["id"]] >= 2 for c in clients)
    assert all(c["site_id"] in site_client for c in contacts)
    assert any(keep_active_value(c) == KEEP_ACTIVE_VALUE for c in contacts)


def test_the_estate_is_valid_against_the_estate_schema() -> None:
    from halo_sync_pipeline.sandbox.estate import load_estate

    data = generate_estate(MIN_TENANTS_FOR_FULL_COVERAGE, 8, 7)
    assert load_estate(data)["m365"]["tenants"][0]["customerId"] == data["m365"]["tenants"][0]["customerId"]


def test_the_committed_example_estate_is_current_and_covers_everything() -> None:
    text = resources.files("halo_sync_pipeline.sandbox").joinpath("example_estate.json").read_text()
    example = json.loads(text)
    assert f"--tenants {MIN_TENANTS_FOR_FULL_COVERAGE} --users-per-tenant 8 --seed 7" in (generator.__doc__ or "")
    assert example == generate_estate(MIN_TENANTS_FOR_FULL_COVERAGE, 8, 7), "regenerate it: see the module docstring"
    assert min(describe_coverage(example).values()) >= 1


def test_describe_coverage_refuses_an_estate_it_did_not_make() -> None:
    data = estate()
    del data["_generator"]
    with pytest.raises(ValueError, match="_generator"):
        describe_coverage(data)


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        generate_estate(0, 10, 1)


@pytest.mark.parametrize("pretty", [[], ["--pretty"]])
def test_cli_generate_prints_the_estate(capsys: pytest.CaptureFixture[str], pretty: list[str]) -> None:
    assert cli_main(["generate", "--tenants", "3", "--users-per-tenant", "2", "--seed", "4", *pretty]) == 0
    out = capsys.readouterr().out
    assert json.loads(out) == generate_estate(3, 2, 4)
    assert (out.count("\n") > 100) == bool(pretty)
