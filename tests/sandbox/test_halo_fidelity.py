"""Halo fidelity of the sandbox over real HTTPS: Azure AD connections and azure_tenants entries as
Halo has them, the harsh reading of a client's azure_tenants in a POST, invoice-site flags, the list
models of GET /api/Users and /api/Site, and odd records real Halo databases hold."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

import httpx
import pytest

from halo_sync_pipeline.sandbox.estate import load_estate
from halo_sync_pipeline.sandbox.server import RunningSandbox

from .conftest import token_response

CONTOSO = "11111111-1111-4111-8111-111111111111"
SECOND = "55555555-5555-4555-8555-555555555555"
THIRD = "66666666-6666-4666-8666-666666666666"
BRACED_OID = "{5F1C0A2B-0000-4000-8000-0000000000AA}"


@cache
def list_model_fields(model: str) -> frozenset[str]:
    """Property names of one of Halo's OpenAPI models (the repo's copy of Halo's schemas)."""
    text = resources.files("halo_sync_pipeline").joinpath("halo_api_schemas.json").read_text()
    return frozenset(json.loads(text)["$defs"][model]["properties"])


def messy(estate: dict[str, Any]) -> dict[str, Any]:
    """The small estate with a second (type-1) connection and the odd records real Halo holds."""
    halo = estate["halo"]
    halo["azure_connections"] = [
        {"id": 1, "name": "Microsoft Partner", "type": 2},
        {"id": 2, "name": "Fabrikam Azure AD", "type": 1},
    ]
    halo["clients"][0]["azure_tenants"][0]["id"] = 40
    halo["clients"][1]["azure_tenants"] = [
        {"id": 41, "details_id": 2, "azure_tenant_id": SECOND, "azure_tenant_name": "Fabrikam own"},
        {"azure_tenant_id": "n/a", "azure_tenant_name": "typo"},
    ]
    halo["clients"].append({"id": 4, "name": ""})
    halo["clients"].append({"id": 5})  # no name at all
    halo["sites"] += [{"id": 40, "client_id": 4, "name": ""}, {"id": 50, "client_id": 5}]
    halo["users"][0]["azureoid"] = BRACED_OID
    halo["users"][2]["azureoid"] = "n/a"
    halo["users"].append({"id": 400, "site_id": 40, "emailaddress": "noname@example.com"})
    return estate


@pytest.fixture
def sandbox(sandbox_factory: Callable[..., RunningSandbox], small_estate: dict[str, Any]) -> RunningSandbox:
    return sandbox_factory(messy(small_estate))


def entries(halo: httpx.Client, client_id: int) -> list[dict[str, Any]]:
    return halo.get(f"/api/Client/{client_id}", params={"includedetails": "true"}).json()["azure_tenants"]


def mappings(halo: httpx.Client, connection_id: int) -> list[dict[str, Any]]:
    params = {"includedetails": "true", "includetenants": "true"}
    return halo.get(f"/api/azureadconnection/{connection_id}", params=params).json()["mappings_client"]


# ----------------------------------------------------------------------------- connections and entries


def test_connections_are_listed_by_type(halo: httpx.Client) -> None:
    assert halo.get("/api/azureadconnection", params={"type": 2}).json() == [
        {"id": 1, "name": "Microsoft Partner", "type": 2}
    ]
    assert halo.get("/api/azureadconnection", params={"type": 1}).json() == [
        {"id": 2, "name": "Fabrikam Azure AD", "type": 1}
    ]
    assert [c["id"] for c in halo.get("/api/azureadconnection").json()] == [1, 2]
    assert halo.get("/api/azureadconnection/3").status_code == 404


def test_each_connection_maps_only_its_own_entries(halo: httpx.Client) -> None:
    partner = mappings(halo, 1)
    assert [(m["id"], m["details_id"], m["azure_tenant_id"], m["client_id"]) for m in partner] == [
        (40, 1, CONTOSO, 1),
        (42, 1, "n/a", 2),
    ]  # the entry without id got the next free id
    assert partner[0] == {
        "id": 40,
        "details_id": 1,
        "azure_tenant_id": CONTOSO,
        "azure_tenant_name": "Contoso",
        "client_id": 1,
        "client_name": "Contoso Ltd",
    }
    assert mappings(halo, 2) == [
        {
            "id": 41,
            "details_id": 2,
            "azure_tenant_id": SECOND,
            "azure_tenant_name": "Fabrikam own",
            "client_id": 2,
            "client_name": "Fabrikam Inc",
        }
    ]


def test_client_details_carry_area_azure_tenant_entries(halo: httpx.Client) -> None:
    found = entries(halo, 2)
    assert found == [
        {
            "id": 41,
            "details_id": 2,
            "details_name": "Fabrikam Azure AD",
            "client_id": 2,
            "client_name": "Fabrikam Inc",
            "azure_tenant_id": SECOND,
            "azure_tenant_name": "Fabrikam own",
        },
        {
            "id": 42,
            "details_id": 1,
            "details_name": "Microsoft Partner",
            "client_id": 2,
            "client_name": "Fabrikam Inc",
            "azure_tenant_id": "n/a",
            "azure_tenant_name": "typo",
        },
    ]
    assert all(set(e) <= list_model_fields("AreaAzureTenant") for e in found)


# ----------------------------------------------------------------------------- harsh POST of azure_tenants


def test_an_entry_missing_from_the_body_is_removed(halo: httpx.Client) -> None:
    saved = halo.post("/api/Client", json=[{"id": 2, "azure_tenants": [{"id": 41}]}]).json()
    assert [e["id"] for e in saved["azure_tenants"]] == [41]
    assert [e["id"] for e in entries(halo, 2)] == [41]
    assert [m["id"] for m in mappings(halo, 1)] == [40]  # the odd n/a entry went with it


def test_an_entry_with_its_id_is_updated_not_duplicated(halo: httpx.Client) -> None:
    body = [
        {"id": 1, "azure_tenants": [{"id": 40, "azure_tenant_id": CONTOSO, "azure_tenant_name": "Contoso Renamed"}]}
    ]
    assert halo.post("/api/Client", json=body).status_code == 200
    assert [(e["id"], e["azure_tenant_name"], e["details_id"]) for e in entries(halo, 1)] == [
        (40, "Contoso Renamed", 1)
    ]


def test_all_existing_entries_plus_a_new_one_keeps_them_all(halo: httpx.Client) -> None:
    body = [
        {"id": 2, "azure_tenants": [{"id": 41}, {"id": 42}, {"azure_tenant_id": THIRD, "azure_tenant_name": "New"}]}
    ]
    saved = halo.post("/api/Client", json=body).json()["azure_tenants"]
    assert [(e["id"], e["details_id"], e["azure_tenant_id"]) for e in saved] == [
        (41, 2, SECOND),
        (42, 1, "n/a"),
        (43, 1, THIRD),
    ]  # a new entry goes to the partner connection
    assert entries(halo, 2) == saved


def test_an_entry_sent_again_without_id_is_re_created_on_the_partner_connection(halo: httpx.Client) -> None:
    # What a write that drops ids does to an entry of another connection: it moves and gets a new id.
    body = [{"id": 2, "azure_tenants": [{"azure_tenant_id": SECOND, "azure_tenant_name": "Fabrikam own"}]}]
    saved = halo.post("/api/Client", json=body).json()["azure_tenants"]
    assert [(e["id"], e["details_id"]) for e in saved] == [(43, 1)]
    assert mappings(halo, 2) == []


@pytest.mark.parametrize(
    ("tenants", "message"),
    [
        (
            [{"id": 41}, {"azure_tenant_id": "n/a"}],
            "element [0] (id 2): azure_tenants[1].azure_tenant_id 'n/a' is not a GUID",
        ),
        ([{"id": 41, "azure_tenant_id": "n/a"}], "azure_tenants[0].azure_tenant_id 'n/a' is not a GUID"),
        ([{"id": 40}], "element [0] (id 2): azure_tenants[0]: id 40 is not an azure_tenants entry of this client"),
        ([{"azure_tenant_id": THIRD, "details_id": 7}], "azure_tenants[0]: details_id 7 is not an Azure AD connection"),
    ],
)
def test_a_refused_azure_tenants_write_writes_nothing(
    halo: httpx.Client, tenants: list[dict[str, Any]], message: str
) -> None:
    before = entries(halo, 2)
    answer = halo.post("/api/Client", json=[{"id": 2, "name": "Fabrikam Changed", "azure_tenants": tenants}])
    assert answer.status_code == 400 and message in answer.json()["error"]
    assert entries(halo, 2) == before
    assert halo.get("/api/Client/2").json()["name"] == "Fabrikam Inc"


def test_new_entries_with_a_connection_and_export_round_trip(halo: httpx.Client, anonymous: httpx.Client) -> None:
    body = [{"id": 3, "azure_tenants": [{"azure_tenant_id": THIRD, "details_id": 2}]}]
    assert halo.post("/api/Client", json=body).json()["azure_tenants"][0]["details_id"] == 2
    exported = anonymous.get("/_sandbox/estate").json()
    assert load_estate(exported) is exported
    assert exported["halo"]["azure_connections"] == [
        {"id": 1, "name": "Microsoft Partner", "type": 2},
        {"id": 2, "name": "Fabrikam Azure AD", "type": 1},
    ]
    assert exported["halo"]["clients"][2]["azure_tenants"] == [
        {"id": 43, "details_id": 2, "azure_tenant_id": THIRD, "azure_tenant_name": None}
    ]
    # Reset to the exported estate: every entry keeps its id and connection.
    assert anonymous.post("/_sandbox/reset", json={"estate": exported}).status_code == 200
    assert anonymous.get("/_sandbox/estate").json() == exported


# ----------------------------------------------------------------------------- odd records


def test_odd_records_are_served_as_stored_through_rest(halo: httpx.Client) -> None:
    clients = {c["id"]: c for c in halo.get("/api/Client", params={"includeinactive": "true"}).json()["clients"]}
    assert (clients[4]["name"], clients[5]["name"]) == ("", None)
    sites = {s["id"]: s for s in halo.get("/api/Site").json()["sites"]}
    assert (sites[40]["name"], sites[50]["name"]) == ("", None)
    users = {u["id"]: u for u in halo.get("/api/Users").json()["users"]}
    assert (users[100]["azure_id"], users[102]["azure_id"], users[400]["name"]) == (BRACED_OID, "n/a", None)
    assert halo.get("/api/Users/100").json()["azureoid"] == BRACED_OID


def test_odd_records_are_served_as_stored_through_reports(halo: httpx.Client) -> None:
    sql = (
        "SELECT uid AS id, UAzureOID AS azureoid, uusername AS name, aareadesc AS client FROM USERS "
        "JOIN SITE ON Usite = Ssitenum JOIN AREA ON sarea = Aarea WHERE uid IN (100, 102, 400) ORDER BY uid"
    )
    report = halo.post("/api/Report", json=[{"name": "odd", "sql": sql}]).json()
    rows = halo.get(f"/api/Report/{report['id']}", params={"loadreport": "true"}).json()["report"]["rows"]
    assert rows == [
        {"id": 100, "azureoid": BRACED_OID, "name": "Alice Adams", "client": "Contoso Ltd"},
        {"id": 102, "azureoid": "n/a", "name": "Carol Clark", "client": "Contoso Ltd"},
        {"id": 400, "azureoid": None, "name": None, "client": ""},
    ]
    tenants = halo.post(
        "/api/Report",
        json=[{"name": "t", "sql": "SELECT AATid, AATtenantid, AATdetailsid FROM AREAAZURETENANT ORDER BY AATid"}],
    ).json()
    loaded = halo.get(f"/api/Report/{tenants['id']}", params={"loadreport": "true"}).json()["report"]["rows"]
    assert loaded == [
        {"AATid": 40, "AATtenantid": CONTOSO, "AATdetailsid": 1},
        {"AATid": 41, "AATtenantid": SECOND, "AATdetailsid": 2},
        {"AATid": 42, "AATtenantid": "n/a", "AATdetailsid": 1},
    ]


# ----------------------------------------------------------------------------- list models


def test_list_rows_follow_halo_list_models_and_details_the_detail_model(halo: httpx.Client) -> None:
    users = halo.get("/api/Users", params={"includeinactive": "true"}).json()["users"]
    assert all(set(u) <= list_model_fields("Users_List") for u in users)
    dan = next(u for u in users if u["id"] == 200)
    assert "azureoid" not in dan and "email2" not in dan and dan["azure_id"] is None
    detail = halo.get("/api/Users/200", params={"includedetails": "true"}).json()
    assert detail["email2"] == "d.drake@fabrikam.com" and "azureoid" in detail
    assert set(detail) - {"customfields"} <= list_model_fields("Users")
    sites = halo.get("/api/Site").json()["sites"]
    assert all(set(s) <= list_model_fields("Site_List") for s in sites)
    assert sites[0]["delivery_address_line1"] == "1 Contoso Way" and "line1" not in sites[0]


# ----------------------------------------------------------------------------- invoice sites


def test_site_flags_decide_invoice_sites(
    sandbox_factory: Callable[..., RunningSandbox], small_estate: dict[str, Any]
) -> None:
    sites = small_estate["halo"]["sites"]
    sites[0]["isinvoicesite"] = True  # site 10 of client 1 (also its main_site_id)
    sites[1]["isinvoicesite"] = True  # site 11 of client 1: two invoice sites, as in messy Halo
    sites.append({"id": 21, "client_id": 2, "name": "Annex", "isinvoicesite": True})  # overrides main_site_id 20
    sandbox = sandbox_factory(small_estate)
    with httpx.Client(base_url=sandbox.halo_url, verify=str(sandbox.ca_bundle), timeout=10) as anonymous:
        token = token_response(sandbox, anonymous).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        sql = "SELECT Ssitenum AS id FROM SITE WHERE SIsInvoiceSite = 1 ORDER BY Ssitenum"
        report = anonymous.post("/api/Report", json=[{"name": "inv", "sql": sql}], headers=auth).json()
        rows = anonymous.get(f"/api/Report/{report['id']}", params={"loadreport": "true"}, headers=auth).json()
        assert rows["report"]["rows"] == [{"id": 10}, {"id": 11}, {"id": 21}]
        clients = anonymous.get("/api/Client", headers=auth).json()["clients"]
        assert [(c["id"], c["main_site_id"]) for c in clients] == [(1, 10), (2, 21)]  # the lowest flagged site
        exported = anonymous.get("/_sandbox/estate").json()["halo"]["sites"]
    assert [(s["id"], s["isinvoicesite"]) for s in exported] == [(10, True), (11, True), (20, False), (21, True)]


def test_every_entry_sent_back_as_returned_plus_a_new_one_keeps_them_all(halo: httpx.Client) -> None:
    # What the sync's write-back sends: the entries exactly as GET returned them (the odd legacy "n/a" one
    # included, unchanged), plus the new tenant under the partner connection.
    current = entries(halo, 2)
    body = [
        {"id": 2, "azure_tenants": [*current, {"azure_tenant_id": THIRD, "azure_tenant_name": "New", "details_id": 1}]}
    ]
    answer = halo.post("/api/Client", json=body)
    assert answer.status_code in (200, 201), answer.text
    after = entries(halo, 2)
    assert after[:2] == current
    assert [(e["azure_tenant_id"], e["details_id"]) for e in after[2:]] == [(THIRD, 1)]
