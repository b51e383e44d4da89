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


@cache
def _estate(tenants: int, users_per_tenant: int, seed: int) -> str:
    return json.dumps(generate_estate(tenants, users_per_tenant, seed), sort_keys=True)


def estate(tenants: int = 40, users_per_tenant: int = 12, seed: int = 3) -> dict[str, Any]:
    return json.loads(_estate(tenants, users_per_tenant, seed))


# --- an independent reading of an estate --------------------------------------------------------------------------


def _norm_name(name: str) -> str:
    return " ".join(name.lower().split())


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

    def __post_init__(self) -> None:
        for tenant in self.estate["m365"]["tenants"]:
            self.tenants[tenant["customerId"]] = tenant
            self.all_domains |= {d["id"] for d in tenant["domains"]}
            for user in tenant["users"]:
                self.users[user["id"].lower()] = user
                self.tenant_of_user[user["id"].lower()] = tenant["customerId"]
                self.upns[user["userPrincipalName"].lower()] = user
        self.clients = {c["id"]: c for c in self.estate["halo"]["clients"]}
        self.sites = {s["id"]: s for s in self.estate["halo"]["sites"]}
        self.contacts = {u["id"]: u for u in self.estate["halo"]["users"]}

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

    def mapped_clients(self, tenant: dict[str, Any]) -> list[dict[str, Any]]:
        return [c for c in self.clients.values()
                if tenant["customerId"] in {t["azure_tenant_id"] for t in c.get("azure_tenants") or []}]  # fmt: skip

    def name_matches(self, tenant: dict[str, Any]) -> list[dict[str, Any]]:
        return [c for c in self.active_clients() if _norm_name(c["name"]) == _norm_name(tenant["displayName"])]

    def website_matches(self, hosts: set[str]) -> list[dict[str, Any]]:
        return [c for c in self.active_clients() if _website_host(c.get("website")) in hosts]

    def contact_domain_matches(self, tenant: dict[str, Any]) -> list[dict[str, Any]]:
        domains = self.verified(tenant)
        owners = {self.client_of(c)["id"] for c in self.contacts.values() if _domain(_email(c["emailaddress"])) in domains}
        return [self.clients[i] for i in sorted(owners) if not self.clients[i].get("inactive")]

    def linked_user(self, contact: dict[str, Any]) -> dict[str, Any] | None:
        return self.users.get((contact.get("azureoid") or "").lower())

    def is_gone(self, contact: dict[str, Any]) -> bool:
        email = _email(contact["emailaddress"])
        return (email != "" and email not in self.upns and self.linked_user(contact) is None
                and _domain(email) in self.all_domains)  # fmt: skip


def selected(user: dict[str, Any]) -> bool:
    """Issue 4's default filters plus the admin UPN pattern on the local part."""
    return (bool(user["assignedLicenses"]) and user["accountEnabled"] and user["userType"] == "Member"
            and "admin" not in user["userPrincipalName"].split("@")[0].lower())  # fmt: skip


def keep_active_value(contact: dict[str, Any]) -> str | None:
    return next((str(f["value"]) for f in contact.get("customfields") or [] if f["name"] == KEEP_ACTIVE_FIELD), None)


def _tenant_site_client(ix: Index, tenant: dict[str, Any]) -> dict[str, Any] | None:
    mapped = ix.mapped_clients(tenant)
    return mapped[0] if mapped else None


def _deactivations(ix: Index, client: dict[str, Any], tenant: dict[str, Any]) -> tuple[int, int]:
    active = [c for c in ix.contacts_of(client) if not c["inactive"]]
    gone = [c for c in active if ix.is_gone(c) and _domain(_email(c["emailaddress"])) in ix.verified(tenant)
            and keep_active_value(c) != KEEP_ACTIVE_VALUE and c["name"] != GENERAL_USER_NAME]  # fmt: skip
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
        "tenant_shares_company": lambda t: any(len(c["azure_tenants"]) >= 2 for c in ix.mapped_clients(t)),
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
    }  # fmt: skip


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
        "general_user": lambda c: c["name"] == GENERAL_USER_NAME,
        "no_contact_details": lambda c: not c["inactive"] and not (c["emailaddress"] or c["phonenumber"]
                                                                   or c["mobilenumber"]),
        "external_email_contact": lambda c: bool(c["emailaddress"])
        and _domain(_email(c["emailaddress"])) not in ix.all_domains,
        "inactive_contact_gone": lambda c: c["inactive"] and ix.is_gone(c),
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
    }  # fmt: skip


def _client_checks(ix: Index) -> dict[str, Callable[[dict[str, Any]], bool]]:
    tenant_hosts = ix.all_domains
    tenant_names = {_norm_name(t["displayName"]) for t in ix.tenants.values()}
    return {
        "halo_only_client": lambda c: not c["azure_tenants"] and _website_host(c["website"]) not in tenant_hosts
        and _norm_name(c["name"]) not in tenant_names,
    }


def _check_planted(data: dict[str, Any]) -> dict[str, list[Any]]:
    """Situation -> ids tagged for it whose record does not show the situation."""
    ix = Index(data)
    checks = {"tenant": (_tenant_checks(ix), ix.tenants), "contact": (_contact_checks(ix), ix.contacts),
              "user": (_user_checks(ix), ix.users), "client": (_client_checks(ix), ix.clients)}  # fmt: skip
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
    checked = {**_tenant_checks(ix), **_contact_checks(ix), **_user_checks(ix), **_client_checks(ix)}
    assert set(checked) == set(SITUATIONS)


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
    assert example == generate_estate(12, 8, 7), "regenerate it: see the generator module's docstring"
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
