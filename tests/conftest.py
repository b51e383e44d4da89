"""Shared fixtures: a small hand-made estate and a factory of running sandboxes (real HTTPS on loopback)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from halo_sync_pipeline.sandbox.server import RunningSandbox, start_sandbox

PARTNER_TENANT_ID = "0f0e0d0c-0000-4000-8000-000000000001"
CONTOSO_TENANT_ID = "11111111-1111-4111-8111-111111111111"
FABRIKAM_TENANT_ID = "22222222-2222-4222-8222-222222222222"
NORTHWIND_TENANT_ID = "33333333-3333-4333-8333-333333333333"
SKU_E3 = "05e9a617-0261-4cee-bb44-138d3ef5d965"


def _graph_user(oid: str, upn: str, given: str, surname: str, *, licensed: bool = True, **extra: Any) -> dict:
    return {
        "id": oid,
        "userPrincipalName": upn,
        "displayName": f"{given} {surname}",
        "givenName": given,
        "surname": surname,
        "mail": upn,
        "jobTitle": None,
        "businessPhones": [],
        "mobilePhone": None,
        "faxNumber": None,
        "streetAddress": None,
        "proxyAddresses": [f"SMTP:{upn}"],
        "assignedLicenses": [{"skuId": SKU_E3}] if licensed else [],
        "accountEnabled": True,
        "userType": "Member",
    } | extra


_SMALL_ESTATE: dict[str, Any] = {
    "halo": {
        "clients": [
            {
                "id": 1,
                "name": "Contoso Ltd",
                "website": "https://www.contoso.com",
                "inactive": False,
                "main_site_id": 10,
                "azure_tenants": [{"azure_tenant_id": CONTOSO_TENANT_ID, "azure_tenant_name": "Contoso"}],
            },
            {
                "id": 2,
                "name": "Fabrikam Inc",
                "website": "fabrikam.com",
                "inactive": False,
                "main_site_id": 20,
                "azure_tenants": [],
            },
            {"id": 3, "name": "Old Co", "website": None, "inactive": True, "main_site_id": None, "azure_tenants": []},
        ],
        "sites": [
            {"id": 10, "client_id": 1, "name": "Main", "line1": "1 Contoso Way"},
            {"id": 11, "client_id": 1, "name": "Branch", "line1": "2 Side Street"},
            {"id": 20, "client_id": 2, "name": "HQ", "line1": "5 Fabrikam Road"},
        ],
        "users": [
            {
                "id": 100,
                "site_id": 10,
                "name": "Alice Adams",
                "firstname": "Alice",
                "surname": "Adams",
                "emailaddress": "alice@contoso.com",
                "phonenumber": "+44 20 1000",
                "mobilenumber": "+44 7700 100",
                "title": "CEO",
                "azureoid": "aaaaaaaa-0000-4000-8000-000000000100",
                "inactive": False,
            },
            {
                "id": 101,
                "site_id": 11,
                "name": "Bob Brown",
                "firstname": "Bob",
                "surname": "Brown",
                "emailaddress": "bob@contoso.com",
                "inactive": True,
            },
            {
                "id": 102,
                "site_id": 10,
                "name": "Carol Clark",
                "firstname": "Carol",
                "surname": "Clark",
                "emailaddress": "carol@contoso.com",
                "inactive": False,
                "customfields": [{"name": "CFM365SyncKeepActive", "value": "2"}],
            },
            {
                "id": 200,
                "site_id": 20,
                "name": "Dan Drake",
                "firstname": "Dan",
                "surname": "Drake",
                "emailaddress": "dan@fabrikam.com",
                "email2": "d.drake@fabrikam.com",
                "inactive": False,
            },
            {"id": 201, "site_id": 20, "name": "General User", "inactive": False},
        ],
    },
    "m365": {
        "partner_tenant_id": PARTNER_TENANT_ID,
        "tenants": [
            {
                "customerId": CONTOSO_TENANT_ID,
                "displayName": "Contoso",
                "defaultDomainName": "contoso.com",
                "consented": True,
                "domains": [
                    {"id": "contoso.com", "isVerified": True, "isDefault": True},
                    {"id": "contoso.onmicrosoft.com", "isVerified": True, "isDefault": False},
                ],
                "users": [
                    _graph_user("aaaaaaaa-0000-4000-8000-000000000100", "alice@contoso.com", "Alice", "Adams"),
                    _graph_user(
                        "aaaaaaaa-0000-4000-8000-000000000103",
                        "erin@contoso.com",
                        "Erin",
                        "Evans",
                        streetAddress="2 Side Street",
                    ),
                ],
            },
            {
                "customerId": FABRIKAM_TENANT_ID,
                "displayName": "Fabrikam Inc",
                "defaultDomainName": "fabrikam.com",
                "consented": True,
                "domains": [{"id": "fabrikam.com", "isVerified": True, "isDefault": True}],
                "users": [
                    _graph_user("bbbbbbbb-0000-4000-8000-000000000200", "dan@fabrikam.com", "Dan", "Drake"),
                    _graph_user("bbbbbbbb-0000-4000-8000-000000000201", "frank@fabrikam.com", "Frank", "Ford"),
                ],
            },
            {
                "customerId": NORTHWIND_TENANT_ID,
                "displayName": "Northwind",
                "defaultDomainName": "northwind.net",
                "consented": False,
                "domains": [{"id": "northwind.net", "isVerified": True, "isDefault": True}],
                "users": [_graph_user("cccccccc-0000-4000-8000-000000000300", "gina@northwind.net", "Gina", "Gray")],
            },
        ],
    },
}


# Markers by where a test lives and what it starts (registered in pyproject.toml; `make test-fast` is
# `-m "not slow"`). Slow: the Dagster jobs of tests/pipeline/, the webserver and PostgreSQL of tests/e2e/,
# and any test that starts a sandbox (the sandbox_factory fixture, or a module that calls start_sandbox).
SLOW_DIRS = frozenset({"pipeline", "e2e"})
E2E_DIRS = frozenset({"e2e"})
TESTS_DIR = Path(__file__).parent


def _starts_a_sandbox(item: pytest.Item) -> bool:
    module = getattr(item, "module", None)
    return "sandbox_factory" in getattr(item, "fixturenames", ()) or hasattr(module, "start_sandbox")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.path.relative_to(TESTS_DIR).parts
        room = parts[0] if len(parts) > 1 else ""
        if room in E2E_DIRS:
            item.add_marker(pytest.mark.e2e)
        if room in SLOW_DIRS or _starts_a_sandbox(item):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def small_estate() -> dict[str, Any]:
    """A fresh copy of a small valid estate: 3 clients (one inactive), 3 sites, 5 users, 3 tenants."""
    return copy.deepcopy(_SMALL_ESTATE)


@pytest.fixture
def sandbox_factory(tmp_path: Path) -> Iterator[Callable[..., RunningSandbox]]:
    """`make(estate=..., state_dir=None, **start_sandbox_kwargs)` starts a sandbox; all are stopped at teardown."""
    started: list[RunningSandbox] = []

    def make(estate: dict[str, Any] | None = None, state_dir: Path | None = None, **kwargs: Any) -> RunningSandbox:
        sandbox = start_sandbox(state_dir or tmp_path / f"sandbox{len(started)}", estate, **kwargs)
        started.append(sandbox)
        return sandbox

    yield make
    for sandbox in started:
        sandbox.stop()
