"""The clients against a running sandbox over real HTTPS (verify = the sandbox's CA bundle).

Each frame is compared with the estate it was loaded from; request counts are read from the
sandbox's `/_sandbox/stats`; faults (429, 5xx, resets, expired tokens, revoked consent, a foreign
nextLink) are injected through the admin API. An autouse fixture captures every log record at
DEBUG (httpx, httpcore, msal, stamina included) and asserts that no secret ever appears in one.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import math
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pandas as pd
import pytest

from halo_sync_pipeline.clients import GraphClient, HaloClient, HaloWriteError, TenantLoad, frames
from halo_sync_pipeline.clients.retry import RetryPolicy
from halo_sync_pipeline.sandbox.server import RunningSandbox
from halo_sync_pipeline.schemas import sources
from tests.clients.resource_defaults import graph_settings, halo_settings

KEEP_ACTIVE = "CFM365SyncKeepActive"
QUICK = RetryPolicy(deadline_s=30.0, wait_initial_s=0.01, wait_max_s=0.05, wait_jitter_s=0.0)
CONTOSO = "11111111-1111-4111-8111-111111111111"
FABRIKAM = "22222222-2222-4222-8222-222222222222"
NORTHWIND = "33333333-3333-4333-8333-333333333333"
LOGGERS = ("", "httpx", "httpcore", "msal", "stamina", "halo_sync_pipeline")

# Every secret a test saw (credentials and every token the clients obtained), checked at teardown.
_SEEN_SECRETS: list[str] = []
_TEXTS: list[str] = []  # exception texts and reprs produced by the tests


@pytest.fixture(autouse=True)
def no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    _SEEN_SECRETS.clear()
    _TEXTS.clear()
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    yield
    records = caplog.get_records("setup") + caplog.get_records("call")
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.__dict__}" for r in records)
    assert records, "nothing was logged: the secret check would be vacuous"
    for secret in _SEEN_SECRETS:
        assert secret not in logged, "a secret appeared in a log record"
        for text in _TEXTS:
            assert secret not in text, f"a secret appeared in: {text[:80]}"


def remember(*clients: HaloClient | GraphClient) -> None:
    for client in clients:
        _SEEN_SECRETS.extend(client._scrub._secrets)  # the secrets and every token it obtained
        _TEXTS.append(repr(client))


def halo_client(sandbox: RunningSandbox, **kwargs: Any) -> HaloClient:
    c = sandbox.credentials
    kwargs.setdefault("retry_policy", QUICK)
    client = HaloClient(
        sandbox.halo_url,
        c.halo_client_id,
        c.halo_client_secret,
        c.halo_tenant,
        verify=str(sandbox.ca_bundle),
        **halo_settings(**kwargs),
    )
    _SEEN_SECRETS.extend([c.halo_client_secret, c.m365_client_secret, c.m365_refresh_token])
    return client


def graph_client(sandbox: RunningSandbox, **kwargs: Any) -> GraphClient:
    c = sandbox.credentials
    kwargs.setdefault("retry_policy", QUICK)
    if not kwargs.get("app_only"):
        kwargs.setdefault("refresh_token", c.m365_refresh_token)
    _SEEN_SECRETS.extend([c.halo_client_secret, c.m365_client_secret, c.m365_refresh_token])
    return GraphClient(
        sandbox.ms_url,
        sandbox.ms_url,
        c.partner_tenant_id,
        c.m365_client_id,
        c.m365_client_secret,
        verify=str(sandbox.ca_bundle),
        **graph_settings(**kwargs),
    )


def admin(sandbox: RunningSandbox, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    with httpx.Client(verify=str(sandbox.ca_bundle), timeout=10) as http:
        response = http.request(method, f"{sandbox.halo_url}/_sandbox/{path}", json=body)
        response.raise_for_status()
        return response.json()


def stats(sandbox: RunningSandbox, server: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in admin(sandbox, "GET", "stats")["requests"]:
        if row["server"] == server and not row["path"].startswith("/_sandbox/"):
            counts[f"{row['method']} {row['path']}"] = counts.get(f"{row['method']} {row['path']}", 0) + row["count"]
    return counts


def read_graph(sandbox: RunningSandbox, **kwargs: Any) -> tuple[list[TenantLoad], GraphClient]:
    async def go() -> tuple[list[TenantLoad], GraphClient]:
        async with graph_client(sandbox, **kwargs) as graph:
            loads = await graph.load_all(await graph.tenants())
            remember(graph)
            return loads, graph

    return asyncio.run(go())


# --- expected frames, built from the estate independently of the clients ------------------------


def _s(value: Any, lower: bool = False) -> Any:
    if value is None or not str(value).strip():
        return pd.NA
    return str(value).strip().lower() if lower else str(value).strip()


def _frame(rows: list[dict[str, Any]], like: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    expected = pd.DataFrame(rows, columns=list(like.columns)).astype(like.dtypes.to_dict())
    return expected.sort_values(key).reset_index(drop=True)


def _sorted(df: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    return df.sort_values(key).reset_index(drop=True)


def expected_halo(
    estate: dict[str, Any], got: dict[str, pd.DataFrame], *, keep_active_of_inactive: bool = True
) -> dict[str, pd.DataFrame]:
    halo = estate["halo"]
    site_client = {s["id"]: s["client_id"] for s in halo["sites"]}
    main_site = {c["id"]: c.get("main_site_id") for c in halo["clients"]}
    companies = [
        {"company_id": c["id"], "name": _s(c["name"]), "website": _s(c.get("website")), "inactive": bool(c.get("inactive")),
         "main_site_id": c.get("main_site_id") if c.get("main_site_id") is not None else pd.NA, "quarantine": pd.NA}
        for c in halo["clients"]
    ]  # fmt: skip
    sites = [
        {"site_id": s["id"], "company_id": s["client_id"], "name": _s(s["name"]), "line1": _s(s.get("line1")),
         "is_main": main_site.get(s["client_id"]) == s["id"], "quarantine": pd.NA}
        for s in halo["sites"]
    ]  # fmt: skip
    contacts = []
    for u in halo["users"]:
        keep = next((cf["value"] for cf in u.get("customfields", []) if cf["name"] == KEEP_ACTIVE), None)
        if u.get("inactive") and not keep_active_of_inactive:
            keep = None
        contacts.append(
            {"contact_id": u["id"], "company_id": site_client[u["site_id"]], "site_id": u["site_id"], "name": _s(u.get("name")),
             "firstname": _s(u.get("firstname")), "surname": _s(u.get("surname")), "email": _s(u.get("emailaddress"), True),
             "email2": _s(u.get("email2"), True), "email3": _s(u.get("email3"), True), "phonenumber": _s(u.get("phonenumber")),
             "mobilenumber": _s(u.get("mobilenumber")), "title": _s(u.get("title")), "azureoid": _s(u.get("azureoid"), True),
             "inactive": bool(u.get("inactive")), "keep_active": _s(keep), "quarantine": pd.NA}
        )  # fmt: skip
    # Entries without an id are numbered 1, 2, … in estate order; all belong to the partner connection (1).
    entries = [(c, t) for c in halo["clients"] for t in c.get("azure_tenants", [])]
    mappings = [
        {"tenant_id": t["azure_tenant_id"].lower(), "tenant_name": _s(t.get("azure_tenant_name")), "company_id": c["id"],
         "company_name": _s(c["name"]), "entry_id": t.get("id", number), "connection_id": t.get("details_id", 1),
         "quarantine": pd.NA}
        for number, (c, t) in enumerate(entries, start=1)
    ]  # fmt: skip
    return {
        "companies": _frame(companies, got["companies"], ["company_id"]),
        "sites": _frame(sites, got["sites"], ["site_id"]),
        "contacts": _frame(contacts, got["contacts"], ["contact_id"]),
        "mappings": _frame(mappings, got["mappings"], ["tenant_id", "company_id"]),
    }


def halo_frames(client: HaloClient) -> dict[str, pd.DataFrame]:
    return {
        "companies": frames.halo_companies_frame(client.companies()),
        "sites": frames.halo_sites_frame(client.sites()),
        "contacts": frames.halo_contacts_frame(client.contacts(KEEP_ACTIVE), KEEP_ACTIVE),
        "mappings": frames.halo_tenant_mappings_frame(client.tenant_mappings()),
    }


HALO_KEYS = {
    "companies": ["company_id"],
    "sites": ["site_id"],
    "contacts": ["contact_id"],
    "mappings": ["tenant_id", "company_id"],
}
HALO_SCHEMAS = {
    "companies": sources.HaloCompaniesSchema, "sites": sources.HaloSitesSchema,
    "contacts": sources.HaloContactsSchema, "mappings": sources.HaloTenantMappingsSchema,
}  # fmt: skip


def assert_halo_frames_equal_estate(got: dict[str, pd.DataFrame], estate: dict[str, Any], **kwargs: Any) -> None:
    expected = expected_halo(estate, got, **kwargs)
    for name, frame in got.items():
        assert sources.validation_failures(HALO_SCHEMAS[name], frame) is None, name
        pd.testing.assert_frame_equal(_sorted(frame, HALO_KEYS[name]), expected[name], obj=name)


def expected_m365(estate: dict[str, Any], loads: list[TenantLoad]) -> dict[str, pd.DataFrame]:
    users, domains, tenants = [], [], []
    for t in estate["m365"]["tenants"]:
        tid = t["customerId"].lower()
        tenants.append(
            {"tenant_id": tid, "display_name": t["displayName"], "default_domain": t["defaultDomainName"].lower(), "status": "loaded",
             "error": pd.NA, "user_count": len(t.get("users", [])), "domain_count": len(t.get("domains", []))}
        )  # fmt: skip
        domains += [
            {"tenant_id": tid, "domain": d["id"].lower(), "is_verified": d["isVerified"], "is_default": d["isDefault"]}
            for d in t.get("domains", [])
        ]
        for u in t.get("users", []):
            aliases = list(
                dict.fromkeys(p[5:].lower() for p in u.get("proxyAddresses") or [] if p[:5].lower() == "smtp:")
            )
            users.append(
                {"tenant_id": tid, "user_id": u["id"].lower(), "upn": u["userPrincipalName"].lower(), "display_name": _s(u.get("displayName")),
                 "given_name": _s(u.get("givenName")), "surname": _s(u.get("surname")), "mail": _s(u.get("mail"), True),
                 "job_title": _s(u.get("jobTitle")), "business_phone": _s((u.get("businessPhones") or [None])[0]),
                 "mobile_phone": _s(u.get("mobilePhone")), "fax": _s(u.get("faxNumber")), "street_address": _s(u.get("streetAddress")),
                 "smtp_aliases": ";".join(aliases) if aliases else pd.NA, "licence_count": len(u.get("assignedLicenses") or []),
                 "account_enabled": u.get("accountEnabled", True), "user_type": _s(u.get("userType")),
                 "is_guest": u.get("userType") == "Guest"}
            )  # fmt: skip
    got_tenants, got_domains, got_users = (
        frames.m365_tenants_frame(loads),
        frames.m365_domains_frame(loads),
        frames.m365_users_frame(loads),
    )
    return {
        "tenants": (_sorted(got_tenants, ["tenant_id"]), _frame(tenants, got_tenants, ["tenant_id"])),
        "domains": (
            _sorted(got_domains, ["tenant_id", "domain"]),
            _frame(domains, got_domains, ["tenant_id", "domain"]),
        ),
        "users": (_sorted(got_users, ["tenant_id", "user_id"]), _frame(users, got_users, ["tenant_id", "user_id"])),
    }


def bigger_estate(small: dict[str, Any], extra_contacts: int, extra_graph_users: int) -> dict[str, Any]:
    """The small estate plus many Halo contacts and a tenant with many Graph users (for paging)."""
    estate = copy.deepcopy(small)
    for n in range(extra_contacts):
        estate["halo"]["users"].append(
            {"id": 1000 + n, "site_id": 20, "name": f"Extra {n}", "emailaddress": f"Extra{n}@Fabrikam.com ", "inactive": n % 3 == 0,
             "customfields": [{"name": KEEP_ACTIVE, "value": "2"}] if n % 5 == 0 else []}
        )  # fmt: skip
    users = estate["m365"]["tenants"][1]["users"]
    template = users[0]
    for n in range(extra_graph_users):
        users.append(
            template | {"id": f"dddddddd-0000-4000-8000-{n:012d}", "userPrincipalName": f"user{n}@fabrikam.com", "mail": f"User{n}@Fabrikam.com",
                        "businessPhones": [f"+1 555 {n:04d}", "+1 555 9999"], "proxyAddresses": [f"SMTP:user{n}@fabrikam.com", f"smtp:U{n}@fabrikam.net", "sip:x"]}
        )  # fmt: skip
    return estate


# --- Halo -------------------------------------------------------------------------------------------


def test_halo_reports_frames_equal_the_estate_with_a_constant_number_of_requests(sandbox_factory, small_estate) -> None:
    counts = []
    for estate in (small_estate, bigger_estate(small_estate, extra_contacts=300, extra_graph_users=0)):
        sandbox = sandbox_factory(estate)
        with halo_client(sandbox) as client:
            got = halo_frames(client)
            remember(client)
        assert_halo_frames_equal_estate(got, estate)
        assert client.request_counts.total == sum(stats(sandbox, "halo").values())
        counts.append(stats(sandbox, "halo"))
    assert counts[0] == counts[1]
    # authinfo + token + per report (search, create, load) x 3 + connection list + its mappings
    assert sum(counts[0].values()) == 2 + 3 * 3 + 2


def test_halo_rest_mode_frames_equal_the_estate(sandbox_factory, small_estate) -> None:
    sandbox = sandbox_factory(small_estate)
    with halo_client(sandbox, reports_mode=False, page_size=2) as client:
        got = halo_frames(client)
        remember(client)
    # REST mode reads the keep-active field for active contacts only (see HaloClient.contacts).
    assert_halo_frames_equal_estate(got, small_estate, keep_active_of_inactive=False)
    active = sum(not u.get("inactive") for u in small_estate["halo"]["users"])
    counts = client.request_counts.snapshot()
    assert counts["GET /api/Users"] == math.ceil(len(small_estate["halo"]["users"]) / 2)
    assert sum(n for key, n in counts.items() if key.startswith("GET /api/Users/")) == active


def test_halo_429_is_waited_out_and_an_expired_token_renewed(sandbox_factory, small_estate) -> None:
    sandbox = sandbox_factory(small_estate, halo_rate_limit="3/1")
    with halo_client(sandbox) as client:
        companies = client.companies()
        admin(sandbox, "POST", "expire-tokens")
        sites = client.sites()
        remember(client)
    statuses = {(s["server"], s["status"]): s["count"] for s in admin(sandbox, "GET", "stats")["statuses"]}
    assert statuses.get(("halo", 429), 0) >= 1, "the rate limit never answered 429: the test proved nothing"
    assert statuses.get(("halo", 401), 0) == 1
    assert client.request_counts.snapshot()["POST /auth/token"] == 2
    assert len(companies) == 3 and len(sites) == 3


def test_halo_5xx_and_connection_resets_are_retried(sandbox_factory, small_estate) -> None:
    sandbox = sandbox_factory(small_estate, halo_rate_limit="off")
    admin(
        sandbox,
        "POST",
        "faults",
        {
            "endpoints": [
                {
                    "path": "^/api/(Report|Client|Site)",
                    "server": "halo",
                    "method": "GET",
                    "error_rate": 0.5,
                    "kinds": ["500", "503", "reset"],
                }
            ]
        },
    )
    with halo_client(sandbox) as client:
        for _ in range(4):
            got = halo_frames(client)
        remember(client)
    assert_halo_frames_equal_estate(got, small_estate)
    statuses = {s["status"] for s in admin(sandbox, "GET", "stats")["statuses"] if s["server"] == "halo"}
    assert statuses & {500, 503, 599}, "no fault was injected: the test proved nothing"


def test_halo_upsert_round_trip_and_refusal(sandbox_factory, small_estate) -> None:
    sandbox = sandbox_factory(small_estate, halo_rate_limit="off")
    admin(sandbox, "POST", "faults", {"fail_nth_write": 1})  # the first POST answers 500 and is retried
    with halo_client(sandbox) as client:
        saved = client.upsert(
            "Users",
            [{"id": 100, "title": "Chief"}, {"site_id": 20, "name": "New Person", "emailaddress": "new@fabrikam.com"}],
        )
        with pytest.raises(HaloWriteError) as refused:
            client.upsert("Users", [{"id": 100, "site_id": "not a number"}])
        _TEXTS.append(str(refused.value))
        contacts = frames.halo_contacts_frame(client.contacts(KEEP_ACTIVE))
        remember(client)
    assert [r.get("id") for r in saved][0] == 100 and saved[1]["id"] > 0
    assert refused.value.status_code == 400 and refused.value.halo_message
    assert contacts.set_index("contact_id").loc[100, "title"] == "Chief"
    assert contacts.set_index("contact_id").loc[saved[1]["id"], "email"] == "new@fabrikam.com"
    assert stats(sandbox, "halo")["POST /api/Users"] == 3  # 500, retry, the refused batch


# --- Graph ------------------------------------------------------------------------------------------


def _all_consented(estate: dict[str, Any]) -> dict[str, Any]:
    # Consent applies under the Secure Application Model too: the refresh-token reads below need every tenant.
    for tenant in estate["m365"]["tenants"]:
        tenant["consented"] = True
    return estate


def test_graph_frames_equal_the_estate_with_minimal_requests(sandbox_factory, small_estate) -> None:
    estate = bigger_estate(_all_consented(small_estate), extra_contacts=0, extra_graph_users=1200)
    sandbox = sandbox_factory(estate, graph_rate=0)
    loads, graph = read_graph(sandbox)
    for name, (got, expected) in expected_m365(estate, loads).items():
        pd.testing.assert_frame_equal(got, expected, obj=name)
        schema = {
            "tenants": sources.M365TenantsSchema,
            "domains": sources.M365DomainsSchema,
            "users": sources.M365UsersSchema,
        }[name]
        assert sources.validation_failures(schema, got) is None
    for load, tenant in zip(loads, estate["m365"]["tenants"], strict=True):
        assert load.request_counts == {"GET /v1.0/users": math.ceil(len(tenant["users"]) / 999), "GET /v1.0/domains": 1}
    served = stats(sandbox, "ms")
    assert served["GET /v1.0/users"] == 1 + 1 + 2 and served["GET /v1.0/contracts"] == 1
    tokens = sum(n for key, n in served.items() if key.endswith("/oauth2/v2.0/token"))
    assert tokens == len(loads) + 1  # one per customer tenant plus the partner's


def test_graph_gdap_tenants_and_app_only_tokens(sandbox_factory, small_estate) -> None:
    sandbox = sandbox_factory(small_estate)
    loads, _ = read_graph(sandbox, tenant_source="gdap", app_only=True)
    by_id = {load.tenant.tenant_id: load for load in loads}
    assert set(by_id) == {CONTOSO, FABRIKAM, NORTHWIND}
    assert by_id[CONTOSO].status == "loaded" and by_id[FABRIKAM].status == "loaded"
    # the estate's Northwind has not consented to the app: app-only tokens cannot read it
    assert by_id[NORTHWIND].status == "failed" and by_id[NORTHWIND].users == []
    _TEXTS.append(by_id[NORTHWIND].error or "")


def test_graph_revoked_consent_fails_one_tenant_while_others_load(sandbox_factory, small_estate) -> None:
    sandbox = sandbox_factory(_all_consented(small_estate))

    async def go() -> tuple[list[TenantLoad], list[TenantLoad]]:
        async with graph_client(sandbox) as graph:
            tenants = await graph.tenants()
            before = await graph.load_all(tenants)  # tokens are now cached: a revocation hits Graph itself
            admin(sandbox, "POST", "faults", {"revoked_tenants": [CONTOSO]})
            after = await graph.load_all(tenants)
            graph._tokens.clear()  # a fresh run: the token request itself is refused
            fresh = await graph.load_all(tenants)
            remember(graph)
            return before, after + fresh

    before, after = asyncio.run(go())
    assert all(load.status == "loaded" for load in before)
    for loads, evidence in ((after[:3], "403"), (after[3:], "AADSTS65001")):
        status = {load.tenant.tenant_id: (load.status, load.error) for load in loads}
        assert status[CONTOSO][0] == "failed" and evidence in status[CONTOSO][1], status[CONTOSO]
        assert status[FABRIKAM] == ("loaded", None) and status[NORTHWIND] == ("loaded", None)
        tenants = frames.m365_tenants_frame(loads)
        assert sources.validation_failures(sources.M365TenantsSchema, tenants) is None
        assert tenants.set_index("tenant_id").loc[CONTOSO, "status"] == "failed"
        assert CONTOSO not in set(frames.m365_users_frame(loads)["tenant_id"])
        _TEXTS.extend(load.error or "" for load in loads)


def test_graph_429_is_waited_out_and_expired_tokens_renewed(sandbox_factory, small_estate) -> None:
    sandbox = sandbox_factory(_all_consented(small_estate), graph_rate=2, graph_burst=1)

    async def go() -> list[TenantLoad]:
        async with graph_client(sandbox) as graph:
            tenants = await graph.tenants()
            first = await graph.load_all(tenants)
            admin(sandbox, "POST", "expire-tokens")
            second = await graph.load_all(tenants)
            remember(graph)
            return first + second

    loads = asyncio.run(go())
    assert [load.status for load in loads] == ["loaded"] * 6
    statuses = {(s["server"], s["status"]): s["count"] for s in admin(sandbox, "GET", "stats")["statuses"]}
    assert statuses.get(("ms", 429), 0) >= 1, "no 429 was answered: the test proved nothing"
    assert statuses.get(("ms", 401), 0) >= 1, "no expired token was presented: the test proved nothing"


def test_graph_5xx_and_resets_are_retried(sandbox_factory, small_estate) -> None:
    sandbox = sandbox_factory(_all_consented(small_estate), graph_rate=0)
    admin(
        sandbox,
        "POST",
        "faults",
        {
            "endpoints": [
                {"path": "^/v1.0/(users|domains)", "server": "ms", "error_rate": 0.5, "kinds": ["500", "503", "reset"]}
            ]
        },
    )
    for _ in range(3):
        loads, _ = read_graph(sandbox)
        assert [load.status for load in loads] == ["loaded"] * 3, [load.error for load in loads]
    statuses = {s["status"] for s in admin(sandbox, "GET", "stats")["statuses"] if s["server"] == "ms"}
    assert statuses & {500, 503, 599}, "no fault was injected: the test proved nothing"


class CountingServer:
    """A TCP listener that only counts connections: the foreign host of a hostile nextLink."""

    def __init__(self) -> None:
        self.connections = 0
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.1)
        self.port = self._socket.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            self.connections += 1
            connection.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()


def test_graph_foreign_next_link_is_refused_and_the_foreign_host_gets_nothing(sandbox_factory, small_estate) -> None:
    estate = bigger_estate(small_estate, extra_contacts=0, extra_graph_users=1000)
    foreign = CountingServer()
    try:
        sandbox = sandbox_factory(
            estate,
            graph_rate=0,
            faults={"foreign_next_link_tenants": [FABRIKAM], "foreign_host": f"https://127.0.0.1:{foreign.port}"},
        )
        loads, _ = read_graph(sandbox)
    finally:
        foreign.stop()
    by_id = {load.tenant.tenant_id: load for load in loads}
    assert by_id[FABRIKAM].status == "failed" and "refused @odata.nextLink" in (by_id[FABRIKAM].error or "")
    assert by_id[FABRIKAM].users == [] and by_id[FABRIKAM].domains == []
    assert by_id[CONTOSO].status == "loaded"
    assert foreign.connections == 0
    _TEXTS.append(by_id[FABRIKAM].error or "")


def test_graph_paging_that_repeats_a_user_gives_each_user_once(sandbox_factory, small_estate) -> None:
    # 1,998 users in pages of 999: 2 pages as Graph pages them, 3 when each page starts again with the last
    # user of the page before (the fault). The repeats are the same record, so every user is kept once.
    estate = bigger_estate(small_estate, extra_contacts=0, extra_graph_users=1996)
    sandbox = sandbox_factory(estate, graph_rate=0, faults={"repeated_paging_tenants": [FABRIKAM]})
    loads, _ = read_graph(sandbox)
    by_id = {load.tenant.tenant_id: load for load in loads}
    fabrikam = by_id[FABRIKAM]
    expected = [user["id"] for user in estate["m365"]["tenants"][1]["users"]]
    assert len(expected) == 1998 and fabrikam.request_counts.get("GET /v1.0/users") == 3
    assert fabrikam.status == "loaded" and [user["id"] for user in fabrikam.users] == expected
    assert by_id[CONTOSO].status == "loaded"
