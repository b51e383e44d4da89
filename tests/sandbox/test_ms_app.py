"""HTTP rules of the sandbox's Microsoft server (identity + Graph), exercised in-process through httpx's ASGI transport."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from halo_sync_pipeline.sandbox.credentials import SandboxCredentials
from halo_sync_pipeline.sandbox.ms_app import DEFAULT_USER_PROPERTIES, build_ms_app
from halo_sync_pipeline.sandbox.runtime import SandboxRuntime
from tests.sandbox.asgi_client import AsgiClient

PARTNER = "0a0a0a0a-0000-4000-8000-000000000001"
TENANT_A = "aaaaaaaa-0000-4000-8000-00000000000a"
TENANT_B = "bbbbbbbb-0000-4000-8000-00000000000b"
TENANT_C = "cccccccc-0000-4000-8000-00000000000c"  # app not consented
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


def _user(n: int, domain: str) -> dict[str, Any]:
    upn = f"user{n}@{domain}"
    return {
        "id": f"{n:08x}-1111-4111-8111-{domain.encode().hex()[:12]:0<12}",
        "displayName": f"User {n}",
        "givenName": "User",
        "surname": str(n),
        "userPrincipalName": upn,
        "mail": upn,
        "jobTitle": "Engineer",
        "businessPhones": ["+44 20 7946 0000"],
        "mobilePhone": None,
        "faxNumber": None,
        "streetAddress": "1 High Street",
        "proxyAddresses": [f"SMTP:{upn}", f"smtp:u{n}@{domain}"],
        "assignedLicenses": [{"skuId": "cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46", "disabledPlans": []}],
        "accountEnabled": True,
        "userType": "Member",
    }


def _m365() -> dict[str, Any]:
    return {
        "partner_tenant_id": PARTNER,
        "tenants": [
            {
                "customerId": TENANT_A,
                "displayName": "Alpha Ltd",
                "defaultDomainName": "alpha.com",
                "consented": True,
                "domains": [
                    {"id": "alpha.com", "isVerified": True, "isDefault": True},
                    {"id": "alpha.onmicrosoft.com", "isVerified": True, "isDefault": False},
                    {"id": "alpha-old.com", "isVerified": False, "isDefault": False},
                ],
                "users": [_user(n, "alpha.com") for n in range(5)],
            },
            {
                "customerId": TENANT_B,
                "displayName": "Beta plc",
                "defaultDomainName": "beta.co.uk",
                "consented": True,
                "gdapStatus": "expired",
                "domains": [{"id": "beta.co.uk", "isVerified": True, "isDefault": True}],
                "users": [_user(n, "beta.co.uk") for n in range(2)],
            },
            {
                "customerId": TENANT_C,
                "displayName": "Gamma GmbH",
                "defaultDomainName": "gamma.de",
                "consented": False,
                "gdapStatus": None,
                "domains": [{"id": "gamma.de", "isVerified": True, "isDefault": True}],
                "users": [_user(0, "gamma.de")],
            },
        ],
    }


@pytest.fixture
def credentials() -> SandboxCredentials:
    return SandboxCredentials.generate(PARTNER)


@pytest.fixture
def runtime() -> SandboxRuntime:
    return SandboxRuntime()


@pytest.fixture
def client(runtime: SandboxRuntime, credentials: SandboxCredentials) -> Iterator[AsgiClient]:
    test_client = AsgiClient(build_ms_app(_m365(), runtime, credentials), base_url="https://ms.test")
    yield test_client
    test_client.close()


def _post_token(client: AsgiClient, tenant: str, **form: str) -> Any:
    return client.post(f"/{tenant}/oauth2/v2.0/token", data=form)


def _app_token(client: AsgiClient, credentials: SandboxCredentials, tenant: str) -> str:
    response = _post_token(client, tenant, grant_type="client_credentials", client_id=credentials.m365_client_id,
                           client_secret=credentials.m365_client_secret, scope=GRAPH_SCOPE)  # fmt: skip
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def _refresh(client: AsgiClient, credentials: SandboxCredentials, tenant: str, refresh_token: str | None = None) -> Any:
    return _post_token(client, tenant, grant_type="refresh_token", client_id=credentials.m365_client_id,
                       client_secret=credentials.m365_client_secret,
                       refresh_token=refresh_token or credentials.m365_refresh_token,
                       scope=f"{GRAPH_SCOPE} offline_access openid profile", client_info="1")  # fmt: skip


def _delegated_token(client: AsgiClient, credentials: SandboxCredentials, tenant: str) -> str:
    response = _refresh(client, credentials, tenant)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def _get(client: AsgiClient, url: str, token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get(url, headers=headers)


def _graph_error(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert set(error) == {"code", "message", "innerError"}
    return error["message"]


def _assert_identity_error(response: Any, status: int, error: str, aadsts: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert body["error_codes"] == [aadsts]
    assert body["error_description"].startswith(f"AADSTS{aadsts}:")


def _no_secrets(response: Any, credentials: SandboxCredentials) -> None:
    for secret in (credentials.m365_client_secret, credentials.m365_refresh_token):
        assert secret not in response.text


# --- identity ----------------------------------------------------------------------------------------------------


def test_openid_configuration_points_back_at_this_server_and_resolves_domains_to_the_tenant_id(
    client: AsgiClient,
) -> None:
    for ref in (TENANT_A, TENANT_A.upper(), "alpha.com", "ALPHA.onmicrosoft.com"):
        config = client.get(f"/{ref}/v2.0/.well-known/openid-configuration").json()
        assert config["token_endpoint"] == f"https://ms.test/{TENANT_A}/oauth2/v2.0/token"
        assert config["authorization_endpoint"] == f"https://ms.test/{TENANT_A}/oauth2/v2.0/authorize"
        assert config["issuer"] == f"https://ms.test/{TENANT_A}/v2.0"
    partner = client.get(f"/{PARTNER}/v2.0/.well-known/openid-configuration").json()
    assert partner["token_endpoint"] == f"https://ms.test/{PARTNER}/oauth2/v2.0/token"


def test_unknown_tenant_and_unverified_domain_are_aadsts90002(
    client: AsgiClient, credentials: SandboxCredentials
) -> None:
    for ref in ("nosuch.com", "alpha-old.com", "dddddddd-0000-4000-8000-00000000000d"):
        _assert_identity_error(
            client.get(f"/{ref}/v2.0/.well-known/openid-configuration"), 400, "invalid_tenant", 90002
        )
    _assert_identity_error(_refresh(client, credentials, "nosuch.com"), 400, "invalid_tenant", 90002)


def test_client_credentials_token_for_a_consented_tenant(client: AsgiClient, runtime: SandboxRuntime,
                                                         credentials: SandboxCredentials) -> None:  # fmt: skip
    response = _post_token(client, "alpha.com", grant_type="client_credentials", client_id=credentials.m365_client_id,
                           client_secret=credentials.m365_client_secret, scope=GRAPH_SCOPE)  # fmt: skip
    body = response.json()
    assert response.status_code == 200
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == body["ext_expires_in"] == int(runtime.token_lifetime_s)
    assert "refresh_token" not in body
    assert runtime.tokens.lookup(body["access_token"])["tid"] == TENANT_A


def test_client_secret_basic_is_accepted(client: AsgiClient, credentials: SandboxCredentials) -> None:
    basic = base64.b64encode(f"{credentials.m365_client_id}:{credentials.m365_client_secret}".encode()).decode()
    response = client.post(f"/{TENANT_A}/oauth2/v2.0/token", headers={"Authorization": f"Basic {basic}"},
                           data={"grant_type": "client_credentials", "scope": GRAPH_SCOPE})  # fmt: skip
    assert response.status_code == 200, response.text


def test_wrong_client_secret_is_401_invalid_client_and_never_echoes_secrets(client: AsgiClient,
                                                                             credentials: SandboxCredentials) -> None:  # fmt: skip
    response = _post_token(client, TENANT_A, grant_type="client_credentials", client_id=credentials.m365_client_id,
                           client_secret="not-the-secret", scope=GRAPH_SCOPE)  # fmt: skip
    _assert_identity_error(response, 401, "invalid_client", 7000215)
    assert "not-the-secret" not in response.text
    _no_secrets(response, credentials)


def test_unknown_client_id_is_unauthorized_client(client: AsgiClient, credentials: SandboxCredentials) -> None:
    response = _post_token(client, TENANT_A, grant_type="client_credentials", client_id="some-other-app",
                           client_secret=credentials.m365_client_secret, scope=GRAPH_SCOPE)  # fmt: skip
    _assert_identity_error(response, 400, "unauthorized_client", 700016)
    _no_secrets(response, credentials)


def test_client_credentials_refused_where_the_app_is_not_consented(client: AsgiClient,
                                                                   credentials: SandboxCredentials) -> None:  # fmt: skip
    response = _post_token(client, TENANT_C, grant_type="client_credentials", client_id=credentials.m365_client_id,
                           client_secret=credentials.m365_client_secret, scope=GRAPH_SCOPE)  # fmt: skip
    _assert_identity_error(response, 400, "invalid_client", 7000229)


def test_client_credentials_needs_a_dot_default_scope(client: AsgiClient, credentials: SandboxCredentials) -> None:
    response = _post_token(client, TENANT_A, grant_type="client_credentials", client_id=credentials.m365_client_id,
                           client_secret=credentials.m365_client_secret, scope="User.Read.All")  # fmt: skip
    _assert_identity_error(response, 400, "invalid_scope", 1002012)


def test_missing_parameters_and_unknown_grant_types(client: AsgiClient, credentials: SandboxCredentials) -> None:
    _assert_identity_error(_post_token(client, TENANT_A, client_id="x"), 400, "invalid_request", 900144)
    response = _post_token(client, TENANT_A, grant_type="password", client_id=credentials.m365_client_id,
                           client_secret=credentials.m365_client_secret, scope=GRAPH_SCOPE)  # fmt: skip
    _assert_identity_error(response, 400, "unsupported_grant_type", 70003)
    response = _post_token(client, TENANT_A, grant_type="client_credentials", client_id=credentials.m365_client_id,
                           client_secret=credentials.m365_client_secret)  # fmt: skip
    _assert_identity_error(response, 400, "invalid_request", 900144)


def test_refresh_token_gives_tokens_for_the_partner_and_every_consented_customer_tenant(
    client: AsgiClient, runtime: SandboxRuntime, credentials: SandboxCredentials
) -> None:
    for tenant in (PARTNER, TENANT_A, TENANT_B):
        response = _refresh(client, credentials, tenant)
        body = response.json()
        assert response.status_code == 200, response.text
        assert runtime.tokens.lookup(body["access_token"])["tid"] == tenant
        assert body["refresh_token"] not in (credentials.m365_refresh_token, body["access_token"])
        client_info = base64.urlsafe_b64decode(body["client_info"] + "==").decode()
        assert PARTNER in client_info


def test_refresh_token_refused_where_the_app_is_not_consented(client: AsgiClient,
                                                              credentials: SandboxCredentials) -> None:  # fmt: skip
    """The Secure Application Model needs the app consented in the customer tenant too (GDAP is not enough)."""
    response = _refresh(client, credentials, TENANT_C)
    _assert_identity_error(response, 400, "invalid_grant", 65001)
    assert credentials.m365_client_id in response.json()["error_description"]
    _no_secrets(response, credentials)
    issued = _refresh(client, credentials, PARTNER).json()["refresh_token"]  # a sandbox-issued one is refused too
    _assert_identity_error(_refresh(client, credentials, TENANT_C, refresh_token=issued), 400, "invalid_grant", 65001)
    _assert_identity_error(_refresh(client, credentials, "gamma.de"), 400, "invalid_grant", 65001)


def test_a_refresh_token_issued_by_the_sandbox_can_be_redeemed_again(client: AsgiClient,
                                                                     credentials: SandboxCredentials) -> None:  # fmt: skip
    new_refresh_token = _refresh(client, credentials, PARTNER).json()["refresh_token"]
    response = _refresh(client, credentials, TENANT_B, refresh_token=new_refresh_token)
    assert response.status_code == 200, response.text


def test_bad_refresh_token_is_invalid_grant_without_echo(client: AsgiClient, credentials: SandboxCredentials) -> None:
    response = _refresh(client, credentials, TENANT_A, refresh_token="forged-refresh-token")
    _assert_identity_error(response, 400, "invalid_grant", 9002313)
    assert "forged-refresh-token" not in response.text
    access_token = _app_token(client, credentials, TENANT_A)
    _assert_identity_error(_refresh(client, credentials, TENANT_A, refresh_token=access_token), 400, "invalid_grant",
                           9002313)  # fmt: skip


# --- Graph: tokens and tenants -----------------------------------------------------------------------------------


def test_graph_without_a_valid_token_is_401(client: AsgiClient, runtime: SandboxRuntime,
                                            credentials: SandboxCredentials) -> None:  # fmt: skip
    assert "empty" in _graph_error(_get(client, "/v1.0/users", None), 401, "InvalidAuthenticationToken")
    _graph_error(_get(client, "/v1.0/users", "made-up"), 401, "InvalidAuthenticationToken")
    refresh_token = _refresh(client, credentials, TENANT_A).json()["refresh_token"]
    _graph_error(_get(client, "/v1.0/users", refresh_token), 401, "InvalidAuthenticationToken")
    runtime.token_lifetime_s = 0  # issued already expired
    expired = _app_token(client, credentials, TENANT_A)
    _graph_error(_get(client, "/v1.0/users", expired), 401, "InvalidAuthenticationToken")


def test_tokens_are_bound_to_their_tenant(client: AsgiClient, credentials: SandboxCredentials) -> None:
    for tenant, domain, count in ((TENANT_A, "alpha.com", 5), (TENANT_B, "beta.co.uk", 2)):
        for token in (_app_token(client, credentials, tenant), _delegated_token(client, credentials, tenant)):
            users = _get(client, "/v1.0/users", token).json()["value"]
            assert len(users) == count
            assert {u["userPrincipalName"].split("@")[1] for u in users} == {domain}
            domains = _get(client, "/v1.0/domains", token).json()["value"]
            assert domain in {d["id"] for d in domains}


def test_contracts_one_per_customer_for_the_partner_only(client: AsgiClient, credentials: SandboxCredentials) -> None:
    partner = _delegated_token(client, credentials, PARTNER)
    for version in ("v1.0", "beta"):
        body = _get(client, f"/{version}/contracts", partner).json()
        assert body["@odata.context"] == f"https://ms.test/{version}/$metadata#contracts"
        contracts = body["value"]
        assert [c["customerId"] for c in contracts] == [TENANT_A, TENANT_B, TENANT_C]
        assert {c["contractType"] for c in contracts} == {"ResellerPartner"}
        assert contracts[0]["defaultDomainName"] == "alpha.com" and contracts[0]["displayName"] == "Alpha Ltd"
        assert len({c["id"] for c in contracts}) == 3 and not {c["id"] for c in contracts} & {TENANT_A, TENANT_B}
    for customer_token in (_delegated_token(client, credentials, TENANT_A), _app_token(client, credentials, TENANT_A)):
        _graph_error(_get(client, "/v1.0/contracts", customer_token), 403, "Authorization_RequestDenied")


def test_gdap_relationships_carry_the_estates_status(client: AsgiClient, credentials: SandboxCredentials) -> None:
    partner = _delegated_token(client, credentials, PARTNER)
    relationships = _get(client, "/v1.0/tenantRelationships/delegatedAdminRelationships", partner).json()["value"]
    statuses = {r["customer"]["tenantId"]: r["status"] for r in relationships}
    assert statuses == {TENANT_A: "active", TENANT_B: "expired"}  # gdapStatus null: no relationship
    assert all(r["id"].endswith(r["customer"]["tenantId"]) for r in relationships)
    customer = _delegated_token(client, credentials, TENANT_A)
    _graph_error(_get(client, "/v1.0/tenantRelationships/delegatedAdminRelationships", customer), 403,
                 "Authorization_RequestDenied")  # fmt: skip
    _graph_error(_get(client, "/v1.0/tenantRelationships/delegatedAdminRelationships?$top=301", partner), 400,
                 "Request_UnsupportedQuery")  # fmt: skip


def test_domains_carry_verification_and_default_flags(client: AsgiClient, credentials: SandboxCredentials) -> None:
    token = _app_token(client, credentials, TENANT_A)
    domains = {d["id"]: d for d in _get(client, "/v1.0/domains", token).json()["value"]}
    assert set(domains) == {"alpha.com", "alpha.onmicrosoft.com", "alpha-old.com"}
    assert (domains["alpha.com"]["isDefault"], domains["alpha.com"]["isVerified"]) == (True, True)
    assert (domains["alpha-old.com"]["isDefault"], domains["alpha-old.com"]["isVerified"]) == (False, False)
    assert domains["alpha.onmicrosoft.com"]["isInitial"] is True
    selected = _get(client, "/v1.0/domains?$select=id,isVerified", token).json()["value"]
    assert all(set(d) == {"id", "isVerified"} for d in selected)


# --- Graph: query rules ------------------------------------------------------------------------------------------


def test_paging_with_top_2_walks_every_user_once_and_keeps_select(client: AsgiClient,
                                                                  credentials: SandboxCredentials) -> None:  # fmt: skip
    token = _app_token(client, credentials, TENANT_A)
    url, pages, seen = "/v1.0/users?$top=2&$select=id,userPrincipalName,accountEnabled", 0, []
    while url:
        body = _get(client, url, token).json()
        pages += 1
        assert len(body["value"]) <= 2
        assert all(set(u) == {"id", "userPrincipalName", "accountEnabled"} for u in body["value"])
        seen += [u["id"] for u in body["value"]]
        url = body.get("@odata.nextLink")
        if url:
            parts = urlsplit(url)
            assert f"{parts.scheme}://{parts.netloc}" == "https://ms.test" and parts.path == "/v1.0/users"
            query = parse_qs(parts.query)
            assert query["$top"] == ["2"] and query["$select"] == ["id,userPrincipalName,accountEnabled"]
            assert "$skiptoken" in query
    assert pages == 3
    assert seen == [u["id"] for u in _m365()["tenants"][0]["users"]]


def test_default_page_size_is_100(client: AsgiClient, runtime: SandboxRuntime, credentials: SandboxCredentials) -> None:
    m365 = _m365()
    m365["tenants"][0]["users"] = [_user(n, "alpha.com") for n in range(150)]
    client.app.state.load_m365(m365)
    token = _app_token(client, credentials, TENANT_A)
    first = _get(client, "/v1.0/users", token).json()
    assert len(first["value"]) == 100
    second = _get(client, first["@odata.nextLink"], token).json()
    assert len(second["value"]) == 50 and "@odata.nextLink" not in second
    assert "$top" not in first["@odata.nextLink"]


@pytest.mark.parametrize("top", ["0", "1000", "-1"])
def test_top_outside_1_to_999_is_400(client: AsgiClient, credentials: SandboxCredentials, top: str) -> None:
    token = _app_token(client, credentials, TENANT_A)
    message = _graph_error(_get(client, f"/v1.0/users?$top={top}", token), 400, "Request_UnsupportedQuery")
    assert "between 1 and 999" in message


def test_top_bounds_themselves_are_accepted_and_non_numbers_refused(client: AsgiClient,
                                                                    credentials: SandboxCredentials) -> None:  # fmt: skip
    token = _app_token(client, credentials, TENANT_A)
    assert len(_get(client, "/v1.0/users?$top=1", token).json()["value"]) == 1
    assert len(_get(client, "/v1.0/users?$top=999", token).json()["value"]) == 5
    _graph_error(_get(client, "/v1.0/users?$top=ten", token), 400, "BadRequest")


def test_v1_users_default_property_set_versus_beta(client: AsgiClient, credentials: SandboxCredentials) -> None:
    token = _app_token(client, credentials, TENANT_A)
    v1_user = _get(client, "/v1.0/users", token).json()["value"][0]
    assert set(v1_user) == set(DEFAULT_USER_PROPERTIES)
    assert v1_user["officeLocation"] is None  # not in the estate, but part of the default set
    beta_user = _get(client, "/beta/users", token).json()["value"][0]
    assert beta_user == _m365()["tenants"][0]["users"][0]
    selected = _get(client, "/v1.0/users?$select=id,proxyAddresses,assignedLicenses,FAXNUMBER", token).json()
    assert set(selected["value"][0]) == {"id", "proxyAddresses", "assignedLicenses", "faxNumber"}
    assert selected["@odata.context"].endswith("#users(id,proxyAddresses,assignedLicenses,faxNumber)")


def test_unknown_select_property_and_unsupported_options_are_400(client: AsgiClient,
                                                                 credentials: SandboxCredentials) -> None:  # fmt: skip
    token = _app_token(client, credentials, TENANT_A)
    message = _graph_error(_get(client, "/v1.0/users?$select=id,shoeSize", token), 400, "Request_BadRequest")
    assert "shoeSize" in message and "microsoft.graph.user" in message
    _graph_error(_get(client, "/v1.0/users?$filter=accountEnabled eq true", token), 400, "Request_UnsupportedQuery")
    _graph_error(_get(client, "/v1.0/groups", token), 400, "BadRequest")


def test_a_skiptoken_only_works_for_its_own_tenant_and_collection(client: AsgiClient,
                                                                  credentials: SandboxCredentials) -> None:  # fmt: skip
    token_a, token_b = _app_token(client, credentials, TENANT_A), _app_token(client, credentials, TENANT_B)
    next_link = _get(client, "/v1.0/users?$top=2", token_a).json()["@odata.nextLink"]
    _graph_error(_get(client, next_link, token_b), 400, "Directory_ExpiredPageToken")
    skiptoken = parse_qs(urlsplit(next_link).query)["$skiptoken"][0]
    _graph_error(_get(client, f"/v1.0/domains?$skiptoken={skiptoken}", token_a), 400, "Directory_ExpiredPageToken")
    _graph_error(_get(client, "/v1.0/users?$skiptoken=garbage", token_a), 400, "Directory_ExpiredPageToken")


# --- Graph: faults -----------------------------------------------------------------------------------------------


def test_a_token_for_a_tenant_without_consent_is_401_identity_not_found(client: AsgiClient,
                                                                       credentials: SandboxCredentials) -> None:  # fmt: skip
    """Tokens issued while the app was consented, then the estate withdraws consent: every kind is refused."""
    tokens = [_app_token(client, credentials, TENANT_A), _delegated_token(client, credentials, TENANT_A)]
    withdrawn = _m365()
    withdrawn["tenants"][0]["consented"] = False
    client.app.state.load_m365(withdrawn)
    for token in tokens:
        for path in ("/v1.0/users", "/v1.0/domains", "/beta/users"):
            response = _get(client, path, token)
            assert "could not be established" in _graph_error(response, 401, "Authorization_IdentityNotFound")
    assert _get(client, "/v1.0/users", _delegated_token(client, credentials, TENANT_B)).status_code == 200


def test_revoked_consent_is_403_on_graph_and_refuses_new_tokens(client: AsgiClient, runtime: SandboxRuntime,
                                                                credentials: SandboxCredentials) -> None:  # fmt: skip
    token = _app_token(client, credentials, TENANT_A)
    runtime.faults.update({"revoked_tenants": [TENANT_A.upper()]})
    _graph_error(_get(client, "/v1.0/users", token), 403, "Authorization_RequestDenied")
    _graph_error(_get(client, "/v1.0/domains", token), 403, "Authorization_RequestDenied")
    response = _post_token(client, TENANT_A, grant_type="client_credentials", client_id=credentials.m365_client_id,
                           client_secret=credentials.m365_client_secret, scope=GRAPH_SCOPE)  # fmt: skip
    _assert_identity_error(response, 400, "invalid_client", 7000229)
    _assert_identity_error(_refresh(client, credentials, TENANT_A), 400, "invalid_grant", 65001)
    assert _get(client, "/v1.0/users", _app_token(client, credentials, TENANT_B)).status_code == 200


def test_throttling_is_per_tenant_with_an_integer_retry_after(client: AsgiClient, runtime: SandboxRuntime,
                                                              credentials: SandboxCredentials) -> None:  # fmt: skip
    token_a, token_b = _app_token(client, credentials, TENANT_A), _app_token(client, credentials, TENANT_B)
    runtime.set_graph_throttle(rate=0.01, burst=1)
    assert _get(client, "/v1.0/users", token_a).status_code == 200
    throttled = _get(client, "/v1.0/users", token_a)
    _graph_error(throttled, 429, "TooManyRequests")
    retry_after = throttled.headers["Retry-After"]
    assert retry_after.isdigit() and int(retry_after) >= 1
    assert _get(client, "/v1.0/users", token_b).status_code == 200


def test_foreign_next_link_fault_points_users_paging_elsewhere(client: AsgiClient, runtime: SandboxRuntime,
                                                               credentials: SandboxCredentials) -> None:  # fmt: skip
    runtime.faults.update({"foreign_next_link_tenants": [TENANT_A], "foreign_host": "https://graph.evil.example"})
    token_a, token_b = _app_token(client, credentials, TENANT_A), _app_token(client, credentials, TENANT_B)
    next_link = _get(client, "/v1.0/users?$top=2", token_a).json()["@odata.nextLink"]
    assert next_link.startswith("https://graph.evil.example/v1.0/users?")
    assert _get(client, "/v1.0/domains?$top=1", token_a).json()["@odata.nextLink"].startswith("https://ms.test/")
    assert _get(client, "/v1.0/users?$top=1", token_b).json()["@odata.nextLink"].startswith("https://ms.test/")


def test_repeated_paging_fault_starts_each_users_page_with_the_last_one_again(client: AsgiClient,
        runtime: SandboxRuntime, credentials: SandboxCredentials) -> None:  # fmt: skip
    runtime.faults.update({"repeated_paging_tenants": [TENANT_A.upper()]})
    token_a, token_b = _app_token(client, credentials, TENANT_A), _app_token(client, credentials, TENANT_B)
    pages, url = [], "/v1.0/users?$top=2&$select=id"
    while url:
        body = _get(client, url, token_a).json()
        pages.append([user["id"] for user in body["value"]])
        url = body.get("@odata.nextLink")
    assert all(page[0] == before[-1] for before, page in zip(pages, pages[1:], strict=False))
    ids = [user_id for page in pages for user_id in page]
    assert len(pages) > 2 and len(ids) > len(set(ids)) == len(_m365()["tenants"][0]["users"])
    first = _get(client, "/v1.0/users?$top=1", token_b).json()
    second = _get(client, first["@odata.nextLink"], token_b).json()
    assert not {u["id"] for u in first["value"]} & {u["id"] for u in second["value"]}  # other tenants page as ever


def test_omitted_user_properties_from_the_estate_and_the_runtime_fault(client: AsgiClient, runtime: SandboxRuntime,
                                                                      credentials: SandboxCredentials) -> None:  # fmt: skip
    m365 = _m365()
    m365["tenants"][0]["sandbox_omit_user_properties"] = ["assignedLicenses", "MAIL"]
    client.app.state.load_m365(m365)
    token_a, token_b = _app_token(client, credentials, TENANT_A), _app_token(client, credentials, TENANT_B)
    selected = "/v1.0/users?$select=id,userPrincipalName,mail,assignedLicenses,accountEnabled"
    for path in (selected, "/beta/users", "/v1.0/users"):
        for user in _get(client, path, token_a).json()["value"]:
            assert "assignedLicenses" not in user and "mail" not in user and user["id"]
    assert set(_get(client, selected, token_a).json()["value"][0]) == {"id", "userPrincipalName", "accountEnabled"}
    assert all("assignedLicenses" in u for u in _get(client, selected, token_b).json()["value"])

    runtime.faults.update({"omit_user_properties": {TENANT_B.upper(): ["accountenabled"]}})
    assert runtime.faults.as_dict()["omit_user_properties"] == {TENANT_B: ["accountEnabled"]}
    b_user = _get(client, selected, token_b).json()["value"][0]
    assert set(b_user) == {"id", "userPrincipalName", "mail", "assignedLicenses"}
    assert "assignedLicenses" not in _get(client, selected, token_a).json()["value"][0]  # the estate's still applies
    runtime.faults.update({"omit_user_properties": {}})
    assert "accountEnabled" in _get(client, selected, token_b).json()["value"][0]


def test_unknown_omitted_property_names_are_refused(client: AsgiClient, runtime: SandboxRuntime) -> None:
    with pytest.raises(ValueError, match="shoeSize"):
        runtime.faults.update({"omit_user_properties": {TENANT_A: ["shoeSize"]}})
    with pytest.raises(ValueError, match="list of user property names"):
        runtime.faults.update({"omit_user_properties": {TENANT_A: "assignedLicenses"}})
    assert runtime.faults.omit_user_properties == {}
    m365 = _m365()
    m365["tenants"][2]["sandbox_omit_user_properties"] = ["assignedLicences"]
    with pytest.raises(ValueError, match=r"m365\.tenants\[2\].*assignedLicences"):
        client.app.state.load_m365(m365)


def test_a_user_key_absent_from_the_estate_is_served_as_null_not_omitted(client: AsgiClient,
                                                                         credentials: SandboxCredentials) -> None:  # fmt: skip
    m365 = _m365()
    del m365["tenants"][0]["users"][0]["assignedLicenses"]
    client.app.state.load_m365(m365)
    token = _app_token(client, credentials, TENANT_A)
    user = _get(client, "/v1.0/users?$select=id,assignedLicenses", token).json()["value"][0]
    assert user == {"id": m365["tenants"][0]["users"][0]["id"], "assignedLicenses": None}


def test_requests_are_counted_by_the_runtime(client: AsgiClient, runtime: SandboxRuntime,
                                             credentials: SandboxCredentials) -> None:  # fmt: skip
    _get(client, "/v1.0/users", _app_token(client, credentials, TENANT_A))
    counted = {(r["server"], r["method"], r["path"]): r["count"] for r in runtime.stats.snapshot()["requests"]}
    assert counted[("ms", "GET", "/v1.0/users")] == 1
    assert counted[("ms", "POST", f"/{TENANT_A}/oauth2/v2.0/token")] == 1


# --- model -------------------------------------------------------------------------------------------------------


def test_load_m365_replaces_the_model_and_a_bad_one_names_the_record(client: AsgiClient,
                                                                     credentials: SandboxCredentials) -> None:  # fmt: skip
    m365 = _m365()
    m365["tenants"] = m365["tenants"][:1]
    client.app.state.load_m365(m365)
    partner = _delegated_token(client, credentials, PARTNER)
    assert [c["customerId"] for c in _get(client, "/v1.0/contracts", partner).json()["value"]] == [TENANT_A]
    assert client.app.state.export_m365() is m365

    broken = _m365()
    broken["tenants"][1]["customerId"] = "not-a-guid"
    with pytest.raises(ValueError, match=r"m365\.tenants\[1\] \(customerId 'not-a-guid'\)"):
        client.app.state.load_m365(broken)
    assert client.app.state.export_m365() is m365  # the served model is untouched

    broken = _m365()
    broken["tenants"][0]["gdapStatus"] = "sort-of"
    with pytest.raises(ValueError, match=r"m365\.tenants\[0\].*gdapStatus"):
        client.app.state.load_m365(broken)
