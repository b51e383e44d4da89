"""The real msal code path against the sandbox's Microsoft server over HTTPS on loopback.

msal only accepts https authorities and runs its own discovery (openid-configuration), token requests
and token cache, so these tests show the sandbox answers the way msal expects Microsoft to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import msal
import pytest
import requests

from halo_sync_pipeline.sandbox.generator import generate_estate
from halo_sync_pipeline.sandbox.server import RunningSandbox
from tests.conftest import CONTOSO_TENANT_ID, FABRIKAM_TENANT_ID, NORTHWIND_TENANT_ID, PARTNER_TENANT_ID

GRAPH_SCOPES = ["https://graph.microsoft.com/.default"]


@pytest.fixture
def sandbox(sandbox_factory: Callable[..., RunningSandbox], small_estate: dict[str, Any]) -> RunningSandbox:
    northwind = next(t for t in small_estate["m365"]["tenants"] if t["customerId"] == NORTHWIND_TENANT_ID)
    northwind["consented"] = False  # said here, the refusal tests depend on it
    return sandbox_factory(estate=small_estate)


@pytest.fixture
def session(sandbox: RunningSandbox) -> Iterator[requests.Session]:
    with _https_session(sandbox) as http:
        yield http


def _https_session(sandbox: RunningSandbox) -> requests.Session:
    http = requests.Session()
    # Without this, REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE from the environment override `verify` per request.
    http.trust_env = False
    http.verify = str(sandbox.ca_bundle)
    return http


def _app(sandbox: RunningSandbox, http: requests.Session, tenant: str, secret: str | None = None,
         cache: msal.TokenCache | None = None) -> msal.ConfidentialClientApplication:  # fmt: skip
    credentials = sandbox.credentials
    return msal.ConfidentialClientApplication(
        credentials.m365_client_id,
        client_credential=secret or credentials.m365_client_secret,
        authority=f"{sandbox.ms_url}/{tenant}",
        validate_authority=False,
        instance_discovery=False,
        http_client=http,
        token_cache=cache,
    )


def _graph_pages(sandbox: RunningSandbox, http: requests.Session, token: str, path: str) -> list[list[dict]]:
    pages, url = [], f"{sandbox.ms_url}{path}"
    while url:
        response = http.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        response.raise_for_status()
        body = response.json()
        pages.append(body["value"])
        url = body.get("@odata.nextLink")
        assert url is None or url.startswith(f"{sandbox.ms_url}/")
    return pages


def test_refresh_token_for_the_partner_reads_contracts(sandbox: RunningSandbox, session: requests.Session) -> None:
    result = _app(sandbox, session, PARTNER_TENANT_ID).acquire_token_by_refresh_token(
        sandbox.credentials.m365_refresh_token, scopes=GRAPH_SCOPES
    )
    assert "access_token" in result, result.get("error_description")
    contracts = [c for page in _graph_pages(sandbox, session, result["access_token"], "/v1.0/contracts") for c in page]
    assert {c["customerId"] for c in contracts} == {CONTOSO_TENANT_ID, FABRIKAM_TENANT_ID, NORTHWIND_TENANT_ID}


def test_refresh_token_per_customer_tenant_reads_only_that_tenant(sandbox: RunningSandbox,
                                                                  session: requests.Session) -> None:  # fmt: skip
    cache = msal.TokenCache()
    for tenant, domain in ((CONTOSO_TENANT_ID, "contoso.com"), (FABRIKAM_TENANT_ID, "fabrikam.com")):
        result = _app(sandbox, session, tenant, cache=cache).acquire_token_by_refresh_token(
            sandbox.credentials.m365_refresh_token, scopes=GRAPH_SCOPES
        )
        assert "access_token" in result, result.get("error_description")
        pages = _graph_pages(
            sandbox, session, result["access_token"], "/v1.0/users?$top=1&$select=id,userPrincipalName"
        )
        assert len(pages) == 2 and all(len(page) == 1 for page in pages)
        assert {u["userPrincipalName"].split("@")[1] for page in pages for u in page} == {domain}


def test_msal_refreshes_with_the_refresh_token_the_sandbox_issued(sandbox: RunningSandbox,
                                                                  session: requests.Session) -> None:  # fmt: skip
    app = _app(sandbox, session, CONTOSO_TENANT_ID)
    first = app.acquire_token_by_refresh_token(sandbox.credentials.m365_refresh_token, scopes=GRAPH_SCOPES)
    assert "access_token" in first, first.get("error_description")
    accounts = app.get_accounts()
    assert len(accounts) == 1  # msal built the account from the sandbox's client_info
    cached = app.acquire_token_silent(GRAPH_SCOPES, account=accounts[0])
    assert cached["access_token"] == first["access_token"]
    renewed = app.acquire_token_silent(GRAPH_SCOPES, account=accounts[0], force_refresh=True)
    assert renewed is not None and renewed["access_token"] != first["access_token"]
    assert len(_graph_pages(sandbox, session, renewed["access_token"], "/v1.0/users")[0]) == 2


def test_client_credentials_for_a_consented_tenant_by_domain_name(sandbox: RunningSandbox,
                                                                  session: requests.Session) -> None:  # fmt: skip
    app = _app(sandbox, session, "contoso.com")
    result = app.acquire_token_for_client(scopes=GRAPH_SCOPES)
    assert "access_token" in result, result.get("error_description")
    assert app.acquire_token_for_client(scopes=GRAPH_SCOPES)["token_source"] == "cache"
    domains = _graph_pages(sandbox, session, result["access_token"], "/v1.0/domains")[0]
    assert {d["id"] for d in domains} == {"contoso.com", "contoso.onmicrosoft.com"}


def test_client_credentials_refused_where_not_consented(sandbox: RunningSandbox, session: requests.Session) -> None:
    result = _app(sandbox, session, NORTHWIND_TENANT_ID).acquire_token_for_client(scopes=GRAPH_SCOPES)
    assert result.get("error") == "invalid_client"
    assert result.get("error_codes") == [7000229]


def test_refresh_token_refused_where_not_consented(sandbox: RunningSandbox, session: requests.Session) -> None:
    """The Secure Application Model too: without the app's consent in the customer tenant, AADSTS65001."""
    credentials = sandbox.credentials
    result = _app(sandbox, session, NORTHWIND_TENANT_ID).acquire_token_by_refresh_token(
        credentials.m365_refresh_token, scopes=GRAPH_SCOPES
    )
    assert "access_token" not in result
    assert result.get("error") == "invalid_grant" and result.get("error_codes") == [65001]
    assert result["error_description"].startswith("AADSTS65001: The user or administrator has not consented")
    assert credentials.m365_refresh_token not in str(result) and credentials.m365_client_secret not in str(result)
    by_domain = _app(sandbox, session, "northwind.net").acquire_token_by_refresh_token(
        credentials.m365_refresh_token, scopes=GRAPH_SCOPES
    )
    assert by_domain.get("error_codes") == [65001]


def test_wrong_secret_is_an_msal_error_without_the_secret(sandbox: RunningSandbox, session: requests.Session) -> None:
    result = _app(sandbox, session, CONTOSO_TENANT_ID, secret="wrong-secret").acquire_token_for_client(
        scopes=GRAPH_SCOPES
    )
    assert result.get("error") == "invalid_client"
    assert "wrong-secret" not in str(result) and sandbox.credentials.m365_client_secret not in str(result)


def test_unknown_tenant_fails_msal_discovery(sandbox: RunningSandbox, session: requests.Session) -> None:
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        _app(sandbox, session, "no-such-tenant.example").acquire_token_for_client(scopes=GRAPH_SCOPES)


def test_a_generated_estate_serves_every_tenant(sandbox_factory: Callable[..., RunningSandbox]) -> None:
    estate = generate_estate(12, 8, 7)
    sandbox = sandbox_factory(estate=estate)
    with _https_session(sandbox) as http:
        partner = _app(sandbox, http, estate["m365"]["partner_tenant_id"]).acquire_token_by_refresh_token(
            sandbox.credentials.m365_refresh_token, scopes=GRAPH_SCOPES
        )
        contracts = _graph_pages(sandbox, http, partner["access_token"], "/v1.0/contracts?$top=5")
        assert len(contracts) == 3 and sum(map(len, contracts)) == 12
        consented = (t for t in estate["m365"]["tenants"] if t.get("consented", True))
        biggest = max(consented, key=lambda t: len(t["users"]))
        token = _app(sandbox, http, biggest["customerId"]).acquire_token_by_refresh_token(
            sandbox.credentials.m365_refresh_token, scopes=GRAPH_SCOPES
        )["access_token"]
        pages = _graph_pages(sandbox, http, token, "/v1.0/users?$top=2&$select=id,accountEnabled,assignedLicenses")
        assert [u["id"] for page in pages for u in page] == [u["id"] for u in biggest["users"]]
