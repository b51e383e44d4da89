"""The Halo API over real HTTPS: auth, reads and paging, writes, reports, Azure AD mappings, faults, admin."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from halo_sync_pipeline.sandbox.server import RunningSandbox

from .conftest import token_response

SEED_CONTACTS_SQL = (
    "SELECT DISTINCT UAzureOID as 'azureoid',uemail as 'emailAddress',Usite as 'site_id',uusername as 'displayName',"
    "uid as 'id',uextn as 'phone',umobile as 'mobilePhone',uinactive as 'inactive',aarea as 'client_id',"
    "CFM365SyncKeepActive FROM USERS LEFT JOIN site ON usite = ssitenum LEFT JOIN area ON sarea = aarea"
)
SEED_COMPANIES_SQL = (
    "SELECT DISTINCT Aarea as 'id', aareadesc as 'name', AWebsite as 'website', ssitenum as 'main_site_id' "
    "from AREA left join SITE on aarea = sarea where SIsInvoiceSite = 1"
)
SEED_SITES_SQL = (
    "SELECT DISTINCT ASSiteID as 'id', ASLine1 as 'line1', sarea as 'client_id' FROM ADDRESSSTORE "
    "LEFT JOIN SITE on ASSiteID = SSiteNum Where sarea <> ''"
)


@pytest.fixture
def sandbox(sandbox_factory: Callable[..., RunningSandbox], small_estate: dict[str, Any]) -> RunningSandbox:
    return sandbox_factory(small_estate)


# ----------------------------------------------------------------------------- auth


def test_authinfo_points_at_the_token_endpoint(sandbox: RunningSandbox, anonymous: httpx.Client) -> None:
    info = anonymous.get("/api/authinfo").json()
    assert info == {
        "auth_url": f"{sandbox.halo_url}/auth",
        "resource_server": f"{sandbox.halo_url}/api",
        "tenant": sandbox.credentials.halo_tenant,
    }


def test_token_is_a_bearer_with_the_configured_lifetime(sandbox: RunningSandbox, anonymous: httpx.Client) -> None:
    body = token_response(sandbox, anonymous).json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and body["access_token"]


def test_wrong_secret_is_invalid_client(sandbox: RunningSandbox, anonymous: httpx.Client) -> None:
    answer = token_response(sandbox, anonymous, secret="wrong")
    assert (answer.status_code, answer.json()) == (401, {"error": "invalid_client"})


def test_wrong_tenant_and_grant_are_refused(sandbox: RunningSandbox, anonymous: httpx.Client) -> None:
    creds = sandbox.credentials
    form = {
        "grant_type": "client_credentials",
        "client_id": creds.halo_client_id,
        "client_secret": creds.halo_client_secret,
    }
    assert anonymous.post("/auth/token", params={"tenant": "other"}, data=form).status_code == 400
    answer = anonymous.post("/auth/token", params={"tenant": creds.halo_tenant}, data=form | {"grant_type": "password"})
    assert answer.json() == {"error": "unsupported_grant_type"}


def test_api_needs_a_valid_token(anonymous: httpx.Client, halo: httpx.Client) -> None:
    assert anonymous.get("/api/Client").status_code == 401
    assert anonymous.get("/api/Client", headers={"Authorization": "Bearer made-up"}).status_code == 401
    assert halo.get("/api/Client").status_code == 200


def test_expired_tokens_are_refused(
    sandbox_factory: Callable[..., RunningSandbox], small_estate: dict[str, Any]
) -> None:
    sandbox = sandbox_factory(small_estate, token_lifetime_s=0)
    with httpx.Client(base_url=sandbox.halo_url, verify=str(sandbox.ca_bundle)) as http:
        token = token_response(sandbox, http).json()["access_token"]
        answer = http.get("/api/Client", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401 and "invalid_token" in answer.headers["www-authenticate"]


def test_admin_expire_tokens_ends_every_session(anonymous: httpx.Client, halo: httpx.Client) -> None:
    assert anonymous.post("/_sandbox/expire-tokens").json() == {"expired": True}
    assert halo.get("/api/Client").status_code == 401


# ----------------------------------------------------------------------------- reads


def test_clients_active_by_default_and_inactive_on_request(halo: httpx.Client) -> None:
    active = halo.get("/api/Client").json()
    assert active["record_count"] == 2 and [c["id"] for c in active["clients"]] == [1, 2]
    everything = halo.get("/api/Client", params={"includeinactive": "true"}).json()
    assert [c["id"] for c in everything["clients"]] == [1, 2, 3]
    assert everything["clients"][0] == {
        "id": 1,
        "name": "Contoso Ltd",
        "website": "https://www.contoso.com",
        "inactive": False,
        "main_site_id": 10,
    }


def test_client_details_carry_azure_tenants(halo: httpx.Client) -> None:
    detail = halo.get("/api/Client/1", params={"includedetails": "true"}).json()
    assert detail["azure_tenants"] == [
        {
            "id": 1,
            "details_id": 1,
            "details_name": "Microsoft Partner",
            "client_id": 1,
            "client_name": "Contoso Ltd",
            "azure_tenant_id": "11111111-1111-4111-8111-111111111111",
            "azure_tenant_name": "Contoso",
        }
    ]
    assert "azure_tenants" not in halo.get("/api/Client/1").json()
    assert halo.get("/api/Client/99").status_code == 404


def test_users_paging(halo: httpx.Client) -> None:
    pages = [
        halo.get(
            "/api/Users", params={"pageinate": "true", "page_size": 2, "page_no": n, "includeinactive": "true"}
        ).json()
        for n in (1, 2, 3, 4)
    ]
    assert [p["record_count"] for p in pages] == [5, 5, 5, 5]
    assert [[u["id"] for u in p["users"]] for p in pages] == [[100, 101], [102, 200], [201], []]
    assert pages[0]["page_no"] == 1 and pages[0]["page_size"] == 2


def test_users_filters(halo: httpx.Client) -> None:
    def ids(**params: Any) -> list[int]:
        return [u["id"] for u in halo.get("/api/Users", params=params).json()["users"]]

    assert ids() == [100, 102, 200, 201]
    assert ids(includeinactive="true", client_id=1) == [100, 101, 102]
    assert ids(site_id=20) == [200, 201]
    assert ids(count=2) == [100, 102]
    assert halo.get("/api/Users", params={"page_size": "x", "pageinate": "true"}).status_code == 400


def test_user_list_has_client_but_customfields_only_in_details(halo: httpx.Client) -> None:
    listed = next(u for u in halo.get("/api/Users").json()["users"] if u["id"] == 102)
    assert listed["client_id"] == 1 and "customfields" not in listed
    detail = halo.get("/api/Users/102", params={"includedetails": "true"}).json()
    assert detail["customfields"] == [{"name": "CFM365SyncKeepActive", "value": "2"}]
    assert halo.get("/api/Users/9999").status_code == 404


def test_sites(halo: httpx.Client) -> None:
    sites = halo.get("/api/Site", params={"client_id": 1}).json()
    assert sites["record_count"] == 2
    assert sites["sites"][0] == {
        "id": 10,
        "client_id": 1,
        "client_name": "Contoso Ltd",
        "name": "Main",
        "delivery_address_line1": "1 Contoso Way",
    }


def test_paths_are_case_insensitive_like_halo(halo: httpx.Client) -> None:
    assert halo.get("/api/users").json()["record_count"] == 4
    assert halo.get("/API/client/1").json()["id"] == 1


def test_azure_ad_connection_mappings(halo: httpx.Client) -> None:
    connections = halo.get("/api/azureadconnection", params={"type": 2}).json()
    assert [c["id"] for c in connections] == [1]
    assert halo.get("/api/azureadconnection", params={"type": 1}).json() == []
    detail = halo.get("/api/azureadconnection/1", params={"includedetails": "true", "includetenants": "true"}).json()
    assert detail["mappings_client"] == [
        {
            "id": 1,
            "details_id": 1,
            "azure_tenant_id": "11111111-1111-4111-8111-111111111111",
            "azure_tenant_name": "Contoso",
            "client_id": 1,
            "client_name": "Contoso Ltd",
        }
    ]
    assert halo.get("/api/azureadconnection/2").status_code == 404


# ----------------------------------------------------------------------------- writes


def test_post_users_partial_update_and_create(halo: httpx.Client, anonymous: httpx.Client) -> None:
    updated = halo.post("/api/Users", json=[{"id": 100, "inactive": True}]).json()
    assert updated["inactive"] is True and updated["emailaddress"] == "alice@contoso.com"
    created = halo.post(
        "/api/Users",
        json=[
            {
                "site_id": 11,
                "name": "Erin Evans",
                "emailaddress": "erin@contoso.com",
                "customfields": [{"name": "CFM365SyncKeepActive", "value": "2"}],
            },
            {"id": 0, "client_id": 2, "name": "Frank Ford"},
        ],
    ).json()
    assert [(u["id"], u["client_id"], u["site_id"]) for u in created] == [(202, 1, 11), (203, 2, 20)]
    estate_users = {u["id"]: u for u in anonymous.get("/_sandbox/estate").json()["halo"]["users"]}
    assert estate_users[202]["customfields"] == [{"name": "CFM365SyncKeepActive", "value": "2"}]
    assert estate_users[100]["inactive"] is True


def test_a_type_error_rejects_the_whole_array(halo: httpx.Client, anonymous: httpx.Client) -> None:
    before = anonymous.get("/_sandbox/estate").json()
    answer = halo.post("/api/Users", json=[{"id": 100, "name": "Renamed"}, {"id": 101, "inactive": "yes"}])
    assert answer.status_code == 400
    assert "element [1]: inactive: 'yes' is not of type 'boolean', 'null'" in answer.json()["error"]
    assert anonymous.get("/_sandbox/estate").json() == before


def test_a_semantic_error_rejects_the_whole_array(halo: httpx.Client, anonymous: httpx.Client) -> None:
    before = anonymous.get("/_sandbox/estate").json()
    answer = halo.post("/api/Users", json=[{"id": 100, "name": "Renamed"}, {"site_id": 999, "name": "X"}])
    assert answer.status_code == 400 and "element [1]: site_id 999 does not exist" in answer.json()["error"]
    assert anonymous.get("/_sandbox/estate").json() == before


def test_body_must_be_an_array(halo: httpx.Client) -> None:
    assert halo.post("/api/Users", json={"id": 100}).status_code == 400
    assert halo.post("/api/Users", content=b"{nope", headers={"content-type": "application/json"}).status_code == 400


def test_unknown_fields_are_accepted_and_counted(halo: httpx.Client, anonymous: httpx.Client) -> None:
    answer = halo.post("/api/Users", json=[{"id": 100, "companyID": 2, "lastName": "X"}, {"id": 101, "lastName": "Y"}])
    assert answer.status_code == 200 and answer.json()[0]["surname"] == "Adams"
    unknown = anonymous.get("/_sandbox/stats").json()["unknown_fields"]
    assert unknown == [
        {"endpoint": "Users", "field": "companyID", "count": 1},
        {"endpoint": "Users", "field": "lastName", "count": 2},
    ]


def test_post_client_adds_tenant_by_replacing_the_list(halo: httpx.Client) -> None:
    tenants = [
        {"azure_tenant_id": "11111111-1111-4111-8111-111111111111", "azure_tenant_name": "Contoso"},
        {
            "azure_tenant_id": "55555555-5555-4555-8555-555555555555",
            "azure_tenant_name": "Second",
            "details_name": "Default",
        },
    ]
    saved = halo.post("/api/Client", json=[{"id": 1, "azure_tenants": tenants}]).json()
    assert [t["azure_tenant_id"] for t in saved["azure_tenants"]] == [t["azure_tenant_id"] for t in tenants]
    mappings = halo.get("/api/azureadconnection/1", params={"includedetails": "true"}).json()["mappings_client"]
    assert len(mappings) == 2
    replaced = halo.post("/api/Client", json=[{"id": 1, "azure_tenants": tenants[1:]}]).json()
    assert len(replaced["azure_tenants"]) == 1


def test_post_client_type_error(halo: httpx.Client) -> None:
    answer = halo.post("/api/Client", json=[{"id": "one"}])
    assert answer.status_code == 400 and "element [0]: id: 'one' is not of type 'integer'" in answer.json()["error"]


# ----------------------------------------------------------------------------- reports


def _save_report(halo: httpx.Client, name: str, sql: str) -> int:
    return halo.post("/api/Report", json=[{"name": name, "sql": sql}]).json()["id"]


def test_seed_reports_run_on_the_mirror(halo: httpx.Client) -> None:
    ids = [
        _save_report(halo, n, sql)
        for n, sql in (("contacts", SEED_CONTACTS_SQL), ("companies", SEED_COMPANIES_SQL), ("sites", SEED_SITES_SQL))
    ]
    contacts, companies, sites = (
        halo.get(f"/api/Report/{i}", params={"loadreport": "true"}).json()["report"]["rows"] for i in ids
    )
    carol = next(r for r in contacts if r["id"] == 102)
    assert carol == {
        "azureoid": None,
        "emailAddress": "carol@contoso.com",
        "site_id": 10,
        "displayName": "Carol Clark",
        "id": 102,
        "phone": None,
        "mobilePhone": None,
        "inactive": 0,
        "client_id": 1,
        "CFM365SyncKeepActive": "2",
    }
    assert len(contacts) == 5
    assert sorted((c["id"], c["main_site_id"]) for c in companies) == [(1, 10), (2, 20)]
    assert sorted((s["id"], s["client_id"], s["line1"]) for s in sites) == [
        (10, 1, "1 Contoso Way"),
        (11, 1, "2 Side Street"),
        (20, 2, "5 Fabrikam Road"),
    ]


def test_report_mirror_follows_rest_writes(halo: httpx.Client) -> None:
    report = _save_report(halo, "contacts", SEED_CONTACTS_SQL)
    halo.post("/api/Users", json=[{"site_id": 20, "name": "New Person", "emailaddress": "new@fabrikam.com"}])
    rows = halo.get(f"/api/Report/{report}", params={"loadreport": "true"}).json()["report"]["rows"]
    new = [r for r in rows if r["id"] == 202]
    assert [(r["client_id"], r["site_id"], r["emailAddress"]) for r in new] == [(2, 20, "new@fabrikam.com")]


def test_report_search_and_paging_via_sql(halo: httpx.Client) -> None:
    _save_report(halo, "Halo M3565 Contact PowerShell Script Report", "SELECT uid FROM USERS ORDER BY uid")
    _save_report(halo, "Other", "SELECT 1 AS one")
    found = halo.get("/api/Report", params={"search": "contact powershell"}).json()
    assert found == {"record_count": 1, "reports": [{"id": 1, "name": "Halo M3565 Contact PowerShell Script Report"}]}
    paged = _save_report(halo, "page2", "SELECT uid FROM USERS ORDER BY uid LIMIT 2 OFFSET 2")
    rows = halo.get(f"/api/Report/{paged}", params={"loadreport": "true"}).json()["report"]["rows"]
    assert rows == [{"Uid": 102}, {"Uid": 200}]


def test_bad_report_sql_gives_load_error(halo: httpx.Client, anonymous: httpx.Client) -> None:
    broken = _save_report(halo, "broken", "SELECT nope FROM USERS")
    answer = halo.get(f"/api/Report/{broken}", params={"loadreport": "true"})
    assert answer.status_code == 200
    assert answer.json()["report"] == {"loaded": False, "rows": [], "load_error": "no such column: nope"}
    before = anonymous.get("/_sandbox/estate").json()
    writer = _save_report(halo, "writer", "DELETE FROM USERS")
    assert "load_error" in halo.get(f"/api/Report/{writer}", params={"loadreport": "true"}).json()["report"]
    assert anonymous.get("/_sandbox/estate").json() == before
    assert halo.get("/api/Report/999").status_code == 404


# ----------------------------------------------------------------------------- rate limit and faults


def test_halo_rate_limit_answers_429(
    sandbox_factory: Callable[..., RunningSandbox], small_estate: dict[str, Any]
) -> None:
    sandbox = sandbox_factory(small_estate, halo_rate_limit=(3, 300))
    with httpx.Client(base_url=sandbox.halo_url, verify=str(sandbox.ca_bundle)) as http:
        token = token_response(sandbox, http).json()["access_token"]
        statuses = [http.get("/api/Client", headers={"Authorization": f"Bearer {token}"}).status_code for _ in range(3)]
        last = http.get("/api/Client", headers={"Authorization": f"Bearer {token}"})
        assert http.get("/_sandbox/stats").status_code == 200  # the admin API is not rate limited
    assert statuses == [200, 200, 429] and last.status_code == 429
    assert int(last.headers["retry-after"]) > 0


def test_fault_endpoint_errors(halo: httpx.Client, anonymous: httpx.Client) -> None:
    faults = anonymous.post(
        "/_sandbox/faults",
        json={"endpoints": [{"path": "^/api/Users$", "method": "GET", "error_rate": 1.0, "kinds": ["503"]}]},
    ).json()
    assert faults["endpoints"][0]["kinds"] == ["503"]
    assert halo.get("/api/Users").status_code == 503
    assert halo.get("/api/Client").status_code == 200
    anonymous.post("/_sandbox/faults", json={"endpoints": [{"path": "^/api/Client", "kinds": ["reset"]}]})
    with pytest.raises(httpx.RemoteProtocolError):
        halo.get("/api/Client")
    anonymous.post("/_sandbox/faults", json={"endpoints": []})
    assert halo.get("/api/Client").status_code == 200


def test_an_injected_429_carries_retry_after_as_the_real_services_do(
    halo: httpx.Client, anonymous: httpx.Client
) -> None:
    limited = {"path": "^/api/Users$", "method": "POST", "kinds": ["429"], "retry_after_s": 600}
    assert (
        anonymous.post("/_sandbox/faults", json={"endpoints": [limited]}).json()["endpoints"][0]["retry_after_s"] == 600
    )
    answer = halo.post("/api/Users", json=[{"id": 1, "inactive": True}])
    assert answer.status_code == 429 and answer.headers["retry-after"] == "600"
    anonymous.post("/_sandbox/faults", json={"endpoints": [{"path": "^/api/Users$", "kinds": ["429"]}]})
    assert halo.get("/api/Users").headers["retry-after"] == "1"  # the default
    anonymous.post("/_sandbox/faults", json={"endpoints": []})


def test_fail_nth_write(halo: httpx.Client, anonymous: httpx.Client) -> None:
    anonymous.post("/_sandbox/faults", json={"fail_nth_write": 2})
    statuses = [halo.post("/api/Users", json=[{"id": 100, "title": f"T{n}"}]).status_code for n in range(3)]
    assert statuses == [200, 500, 200]
    assert halo.get("/api/Users/100").json()["title"] == "T2"


def test_faults_settings_and_validation(halo: httpx.Client, anonymous: httpx.Client) -> None:
    current = anonymous.post(
        "/_sandbox/faults", json={"halo_rate_limit": "1/60", "token_lifetime_s": 5, "graph_rate": 2, "graph_burst": 3}
    ).json()
    assert (current["halo_rate_limit"], current["token_lifetime_s"], current["graph_rate"], current["graph_burst"]) == (
        "1/60",
        5.0,
        2.0,
        3,
    )
    assert halo.get("/api/Client").status_code == 200
    assert halo.get("/api/Client").status_code == 429
    assert anonymous.post("/_sandbox/faults", json={"halo_rate_limit": "off"}).json()["halo_rate_limit"] is None
    assert halo.get("/api/Client").status_code == 200
    refused = anonymous.post("/_sandbox/faults", json={"latency_ms": 5, "halo_rate_limit": "fast"})
    assert refused.status_code == 400
    assert anonymous.post("/_sandbox/faults", json={}).json()["latency_ms"] == 0.0  # nothing half-applied


# ----------------------------------------------------------------------------- admin


def test_admin_estate_is_the_estate_format(anonymous: httpx.Client, small_estate: dict[str, Any]) -> None:
    from halo_sync_pipeline.sandbox.estate import load_estate

    exported = anonymous.get("/_sandbox/estate").json()
    assert load_estate(exported) is exported
    assert exported["m365"] == small_estate["m365"]
    assert [u["id"] for u in exported["halo"]["users"]] == [100, 101, 102, 200, 201]


def test_admin_stats_count_requests_per_path(halo: httpx.Client, anonymous: httpx.Client) -> None:
    halo.get("/api/Client")
    halo.get("/api/Client")
    stats = anonymous.get("/_sandbox/stats").json()
    assert {"server": "halo", "method": "GET", "path": "/api/Client", "count": 2} in stats["requests"]


def test_admin_reset_goes_back_to_the_start_estate(
    halo: httpx.Client, anonymous: httpx.Client, small_estate: dict[str, Any]
) -> None:
    start = anonymous.get("/_sandbox/estate").json()
    halo.post("/api/Users", json=[{"site_id": 10, "name": "Temp"}])
    assert anonymous.post("/_sandbox/reset").json() == {"reset": True}
    assert anonymous.get("/_sandbox/estate").json() == start
    counted = {r["path"] for r in anonymous.get("/_sandbox/stats").json()["requests"]}
    assert counted == {"/_sandbox/reset", "/_sandbox/estate"}  # the reset is recorded once it has answered


def test_admin_reset_loads_a_new_estate_or_refuses_a_bad_one(
    halo: httpx.Client, anonymous: httpx.Client, small_estate: dict[str, Any]
) -> None:
    small_estate["halo"]["clients"][0]["name"] = "Contoso Renamed"
    del small_estate["m365"]["tenants"][2]
    assert anonymous.post("/_sandbox/reset", json={"estate": small_estate}).status_code == 200
    current = anonymous.get("/_sandbox/estate").json()
    assert current["halo"]["clients"][0]["name"] == "Contoso Renamed" and len(current["m365"]["tenants"]) == 2
    small_estate["halo"]["users"][0]["site_id"] = 77
    refused = anonymous.post("/_sandbox/reset", json={"estate": small_estate})
    assert refused.status_code == 400 and "halo.users[0] (id 100): site_id 77 does not exist" in refused.json()["error"]
    assert anonymous.get("/_sandbox/estate").json() == current
