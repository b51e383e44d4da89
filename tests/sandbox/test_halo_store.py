"""The SQLite store directly: estate round trip, upsert semantics, report SQL safety."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from halo_sync_pipeline.sandbox.halo_store import HaloStore, ReportSqlError, WriteRejected

USER_OPTIONAL = (
    "firstname",
    "surname",
    "emailaddress",
    "email2",
    "email3",
    "phonenumber",
    "mobilenumber",
    "fax",
    "title",
    "azureoid",
)


def _normalised(halo: dict[str, Any]) -> dict[str, Any]:
    """An estate's halo part with absent optional fields filled in as the export writes them
    (azure_tenants entries without id numbered from 1 in order, on the default connection 1)."""
    halo = copy.deepcopy(halo)
    main_sites = {c.get("main_site_id") for c in halo["clients"]}
    entry_id = 0
    for client in halo["clients"]:
        client.setdefault("name", None)
        client.setdefault("website", None)
        client.setdefault("inactive", False)
        client.setdefault("main_site_id", None)
        entries = []
        for t in client.get("azure_tenants", []):
            entry_id += 1
            entries.append({"id": entry_id, "details_id": 1, "azure_tenant_name": None} | t)
        client["azure_tenants"] = entries
    for site in halo["sites"]:
        site.setdefault("name", None)
        site.setdefault("line1", None)
        site.setdefault("isinvoicesite", site["id"] in main_sites)
    for user in halo["users"]:
        for name in USER_OPTIONAL:
            user.setdefault(name, None)
        user.setdefault("name", None)
        user.setdefault("inactive", False)
        user["customfields"] = [cf for cf in user.get("customfields", []) if cf.get("value") is not None]
    halo.setdefault("azure_connections", [{"id": 1, "name": "Microsoft Partner", "type": 2}])
    return halo


@pytest.fixture
def store(tmp_path: Path, small_estate: dict[str, Any]) -> Any:
    halo_store = HaloStore(tmp_path)
    halo_store.load(small_estate["halo"])
    yield halo_store
    halo_store.close()


def test_export_round_trips_the_estate(store: HaloStore, small_estate: dict[str, Any]) -> None:
    assert store.export() == _normalised(small_estate["halo"])


def test_round_trip_with_every_optional_field_absent(tmp_path: Path) -> None:
    halo = {
        "clients": [{"id": 5, "name": "Bare"}],
        "sites": [{"id": 6, "client_id": 5, "name": "S"}],
        "users": [{"id": 7, "site_id": 6, "name": "U"}],
    }
    with_store = HaloStore(tmp_path)
    with_store.load(halo)
    assert with_store.export() == _normalised(halo)
    # The keep-active field is defined although no user has a value: the contacts report still runs.
    assert with_store.run_report_sql("SELECT uid AS id, CFM365SyncKeepActive FROM USERS") == [
        {"id": 7, "CFM365SyncKeepActive": None}
    ]
    with_store.close()


def test_load_replaces_everything(store: HaloStore) -> None:
    store.save_reports([{"name": "r", "sql": "SELECT 1"}])
    store.load({"clients": [{"id": 1, "name": "Only"}], "sites": [], "users": []})
    assert store.export() == {
        "clients": [
            {"id": 1, "name": "Only", "website": None, "inactive": False, "main_site_id": None, "azure_tenants": []}
        ],
        "sites": [],
        "users": [],
        "azure_connections": [{"id": 1, "name": "Microsoft Partner", "type": 2}],
    }
    assert store.reports(None) == []


def test_partial_update_keeps_other_fields(store: HaloStore) -> None:
    before = store.user(100, details=True)
    [saved] = store.upsert_users([{"id": 100, "inactive": True}])
    assert saved == before | {"inactive": True}


def test_create_gets_max_plus_one_and_client_of_its_site(store: HaloStore) -> None:
    saved = store.upsert_users(
        [{"site_id": 11, "firstname": "Erin", "surname": "Evans"}, {"site_id": 20, "name": "Zed"}]
    )
    assert [(u["id"], u["client_id"], u["name"]) for u in saved] == [(202, 1, "Erin Evans"), (203, 2, "Zed")]


def test_create_with_client_id_only_lands_on_the_main_site(store: HaloStore) -> None:
    [saved] = store.upsert_users([{"id": 0, "client_id": 2, "name": "New"}])
    assert saved["site_id"] == 20


def test_a_bad_element_rolls_back_the_whole_request(store: HaloStore) -> None:
    before = store.export()
    with pytest.raises(WriteRejected, match=r"element \[1\]: site_id 99 does not exist"):
        store.upsert_users([{"id": 100, "name": "Changed"}, {"site_id": 99, "name": "X"}])
    assert store.export() == before


@pytest.mark.parametrize(
    ("element", "message"),
    [
        ({"id": 999, "name": "x"}, r"element \[0\] \(id 999\): no user with id 999"),
        ({"name": "nobody"}, "a new user needs a site_id"),
        ({"site_id": 10, "client_id": 2, "name": "x"}, "site_id 10 belongs to client 1, not client_id 2"),
        ({"id": 100, "customfields": [{"name": "Keep", "value": "1"}]}, "not a Halo custom field name"),
        ({"id": 100, "customfields": [{"value": "1"}]}, r"customfields\[0\] has no name"),
        ({"id": 100, "name": ""}, "name cannot be empty"),
    ],
)
def test_user_writes_halo_refuses(store: HaloStore, element: dict[str, Any], message: str) -> None:
    with pytest.raises(WriteRejected, match=message):
        store.upsert_users([element])


def test_new_custom_field_becomes_a_users_column(store: HaloStore) -> None:
    store.upsert_users([{"id": 200, "customfields": [{"name": "CFNewFlag", "value": 1}]}])
    rows = store.run_report_sql("SELECT uid, CFNewFlag, CFM365SyncKeepActive FROM USERS WHERE uid IN (102, 200)")
    assert rows == [
        {"Uid": 102, "CFNewFlag": None, "CFM365SyncKeepActive": "2"},
        {"Uid": 200, "CFNewFlag": 1, "CFM365SyncKeepActive": None},
    ]


def test_client_azure_tenants_are_replaced_and_main_site_moves(store: HaloStore) -> None:
    tenant = "44444444-4444-4444-8444-444444444444"
    [saved] = store.upsert_clients(
        [{"id": 1, "main_site_id": 11, "azure_tenants": [{"azure_tenant_id": tenant, "azure_tenant_name": "New"}]}]
    )
    # The entry left out of the list (Contoso, id 1) is removed; the new one gets a new id.
    assert saved["azure_tenants"] == [
        {
            "id": 2,
            "details_id": 1,
            "details_name": "Microsoft Partner",
            "client_id": 1,
            "client_name": "Contoso Ltd",
            "azure_tenant_id": tenant,
            "azure_tenant_name": "New",
        }
    ]
    assert saved["main_site_id"] == 11 and saved["name"] == "Contoso Ltd"
    assert store.run_report_sql("SELECT Ssitenum FROM SITE WHERE SIsInvoiceSite = 1 AND sarea = 1") == [
        {"Ssitenum": 11}
    ]


@pytest.mark.parametrize(
    ("element", "message"),
    [
        ({"id": 1, "main_site_id": 20}, "main_site_id 20 is not a site of it"),
        ({"id": 1, "azure_tenants": [{"azure_tenant_id": None}]}, "is not a GUID"),
        (
            {"id": 1, "azure_tenants": [{"id": 1, "azure_tenant_id": "n/a"}]},
            r"azure_tenants\[0\]\.azure_tenant_id 'n/a'",
        ),
        (
            {"id": 2, "azure_tenants": [{"id": 1}]},
            r"azure_tenants\[0\]: id 1 is not an azure_tenants entry of this client",
        ),
        ({"id": 1, "azure_tenants": [{"id": 1}, {"id": 1}]}, r"\(listed twice\)"),
        (
            {"id": 1, "azure_tenants": [{"azure_tenant_id": "44444444-4444-4444-8444-444444444444", "details_id": 9}]},
            "details_id 9 is not an Azure AD connection",
        ),
        ({"website": "x.com"}, "a new client needs a name"),
        ({"id": 42, "name": "x"}, "no client with id 42"),
    ],
)
def test_client_writes_halo_refuses(store: HaloStore, element: dict[str, Any], message: str) -> None:
    with pytest.raises(WriteRejected, match=message):
        store.upsert_clients([element])


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM USERS",
        "UPDATE USERS SET uinactive = 1",
        "SELECT 1; DELETE FROM USERS",
        "WITH x AS (SELECT 1) DELETE FROM USERS",
        "SELECT * FROM pragma_table_info('USERS')",
        "DROP TABLE USERS",
        "ATTACH DATABASE 'x.db' AS x",
    ],
)
def test_report_sql_cannot_write(store: HaloStore, sql: str) -> None:
    before = store.export()
    with pytest.raises(ReportSqlError):
        store.run_report_sql(sql)
    assert store.export() == before


def test_report_sql_errors_are_reported(store: HaloStore) -> None:
    with pytest.raises(ReportSqlError, match="no such column: nope"):
        store.run_report_sql("SELECT nope FROM USERS")


def test_a_state_folder_from_before_azure_connections_resumes(tmp_path: Path) -> None:
    import sqlite3

    old = sqlite3.connect(tmp_path / "halo.sqlite3")
    old.executescript(
        "CREATE TABLE AREA (Aarea INTEGER PRIMARY KEY, aareadesc TEXT NOT NULL, AWebsite TEXT, AIsInactive INTEGER);"
        "CREATE TABLE USERS (Uid INTEGER PRIMARY KEY, uusername TEXT NOT NULL, Usite INTEGER NOT NULL);"
        "CREATE TABLE AREAAZURETENANT (AATid INTEGER PRIMARY KEY, AATarea INTEGER NOT NULL, AATtenantid TEXT NOT NULL,"
        " AATtenantname TEXT);"
        "INSERT INTO AREA VALUES (1, 'Contoso', NULL, 0);"
        "INSERT INTO AREAAZURETENANT VALUES (3, 1, '11111111-1111-4111-8111-111111111111', 'Contoso');"
    )
    old.commit()
    old.close()
    resumed = HaloStore(tmp_path)
    assert resumed.azure_connections(type_=2) == [{"id": 1, "name": "Microsoft Partner", "type": 2}]
    assert resumed.tenant_mappings(1) == [
        {
            "id": 3,
            "details_id": 1,
            "azure_tenant_id": "11111111-1111-4111-8111-111111111111",
            "azure_tenant_name": "Contoso",
            "client_id": 1,
            "client_name": "Contoso",
        }
    ]
    resumed.close()
