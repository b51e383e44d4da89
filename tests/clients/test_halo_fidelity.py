"""HaloClient against a running sandbox over real HTTPS: Azure AD connections and mappings with their
entry ids, the detail read of a company, and REST mode on Halo's list models (azure_id,
delivery_address_line1)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from halo_sync_pipeline.clients import HaloClient
from halo_sync_pipeline.clients.retry import RetryPolicy
from halo_sync_pipeline.sandbox.server import RunningSandbox
from tests.clients.resource_defaults import halo_settings

QUICK = RetryPolicy(deadline_s=30.0, wait_initial_s=0.01, wait_max_s=0.05, wait_jitter_s=0.0)
CONTOSO = "11111111-1111-4111-8111-111111111111"
OWN = "55555555-5555-4555-8555-555555555555"
NEW = "66666666-6666-4666-8666-666666666666"
BRACED_OID = "{5F1C0A2B-0000-4000-8000-0000000000AA}"
KEEP_ACTIVE = "CFM365SyncKeepActive"


@pytest.fixture
def sandbox(sandbox_factory: Callable[..., RunningSandbox], small_estate: dict[str, Any]) -> RunningSandbox:
    halo = small_estate["halo"]
    halo["azure_connections"] = [
        {"id": 1, "name": "Microsoft Partner", "type": 2},
        {"id": 2, "name": "Fabrikam Azure AD", "type": 1},
    ]
    halo["clients"][0]["azure_tenants"][0]["id"] = 40
    halo["clients"][1]["azure_tenants"] = [
        {"id": 41, "details_id": 2, "azure_tenant_id": OWN},
        {"id": 42, "azure_tenant_id": "n/a", "azure_tenant_name": "typo"},
    ]
    halo["users"][0]["azureoid"] = BRACED_OID
    return sandbox_factory(small_estate)


def make_client(sandbox: RunningSandbox, **kwargs: Any) -> HaloClient:
    c = sandbox.credentials
    return HaloClient(
        sandbox.halo_url,
        c.halo_client_id,
        c.halo_client_secret,
        c.halo_tenant,
        verify=str(sandbox.ca_bundle),
        **halo_settings(retry_policy=QUICK, **kwargs),
    )


@pytest.fixture
def client(sandbox: RunningSandbox) -> Iterator[HaloClient]:
    with make_client(sandbox) as halo:
        yield halo


def requests_to(sandbox: RunningSandbox, prefix: str) -> int:
    stats = httpx.get(f"{sandbox.halo_url}/_sandbox/stats", verify=str(sandbox.ca_bundle)).json()
    return sum(r["count"] for r in stats["requests"] if r["path"].startswith(prefix))


def test_tenant_mappings_are_the_partner_connections_entries_with_their_ids(client: HaloClient) -> None:
    assert client.tenant_mappings() == [
        {
            "id": 40,
            "details_id": 1,
            "azure_tenant_id": CONTOSO,
            "azure_tenant_name": "Contoso",
            "client_id": 1,
            "client_name": "Contoso Ltd",
        },
        {
            "id": 42,
            "details_id": 1,
            "azure_tenant_id": "n/a",
            "azure_tenant_name": "typo",
            "client_id": 2,
            "client_name": "Fabrikam Inc",
        },
    ]  # the type-1 connection's entry (41) is not a partner mapping
    assert client.skipped_records == []


def test_connections_and_mappings_together_cost_what_the_mappings_cost(
    sandbox: RunningSandbox, client: HaloClient
) -> None:
    client.tenant_mappings()
    alone = requests_to(sandbox, "/api/azureadconnection")
    connections, mappings = client.partner_connections_and_mappings()
    assert requests_to(sandbox, "/api/azureadconnection") - alone == alone == 2
    assert connections == [{"id": 1, "name": "Microsoft Partner", "type": 2}]
    assert [m["id"] for m in mappings] == [40, 42]
    assert client.azure_connections(type_=1) == [{"id": 2, "name": "Fabrikam Azure AD", "type": 1}]
    assert client.azure_connections() == connections


def test_company_details_show_a_write_back_that_keeps_every_entry(client: HaloClient) -> None:
    before = client.company_details(2)["azure_tenants"]
    kept = [{"id": e["id"]} for e in before]
    client.upsert("Client", [{"id": 2, "azure_tenants": [*kept, {"azure_tenant_id": NEW, "azure_tenant_name": "New"}]}])
    after = client.company_details(2)["azure_tenants"]
    assert [(e["id"], e["details_id"], e["azure_tenant_id"]) for e in after] == [
        (41, 2, OWN),
        (42, 1, "n/a"),
        (43, 1, NEW),
    ]


def test_rest_mode_reads_the_list_models(sandbox: RunningSandbox) -> None:
    with make_client(sandbox, reports_mode=False, page_size=2) as rest:
        contacts = {c["id"]: c for c in rest.contacts(KEEP_ACTIVE)}
        sites = {s["id"]: s for s in rest.sites()}
        companies = {c["id"]: c for c in rest.companies()}
    assert contacts[100]["azureoid"] == BRACED_OID  # from the list row's azure_id
    assert contacts[200]["email2"] == "d.drake@fabrikam.com"  # not on Users_List: from the detail read
    assert contacts[102]["keep_active"] == "2"
    assert [(s["line1"], s["is_main"]) for s in sites.values()] == [
        ("1 Contoso Way", True),
        ("2 Side Street", False),
        ("5 Fabrikam Road", True),
    ]
    assert companies[1]["main_site_id"] == 10


def test_rest_mode_and_reports_mode_read_the_same_records(sandbox: RunningSandbox, client: HaloClient) -> None:
    def normal(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(
            ({k: (bool(v) if k in ("inactive", "is_main") else v) for k, v in r.items()} for r in records),
            key=lambda r: r["id"],
        )

    with make_client(sandbox, reports_mode=False) as rest:
        assert normal(rest.sites()) == normal(client.sites())
        active_rest = [c for c in rest.contacts(KEEP_ACTIVE) if not c["inactive"]]
        active_reports = [c for c in client.contacts(KEEP_ACTIVE) if not c["inactive"]]
        assert normal(active_rest) == normal(active_reports)
