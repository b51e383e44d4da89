"""Estate validation: schema and referential integrity, each error naming the bad record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from halo_sync_pipeline.sandbox.estate import EstateError, compile_checker, load_estate

CONTOSO = "11111111-1111-4111-8111-111111111111"


def _problems(estate: dict[str, Any]) -> list[str]:
    with pytest.raises(EstateError) as caught:
        load_estate(estate)
    return caught.value.problems


def test_small_estate_is_valid_and_returned(small_estate: dict[str, Any]) -> None:
    assert load_estate(small_estate) is small_estate


def test_loads_from_a_file(small_estate: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "estate.json"
    path.write_text(json.dumps(small_estate))
    assert load_estate(path) == small_estate
    assert load_estate(str(path)) == small_estate


def test_unreadable_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(EstateError, match="no such file"):
        load_estate(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(EstateError, match=r"bad\.json: not valid JSON"):
        load_estate(tmp_path / "bad.json")


def test_missing_site_names_the_user(small_estate: dict[str, Any]) -> None:
    small_estate["halo"]["users"][3]["site_id"] = 77
    assert _problems(small_estate) == ["halo.users[3] (id 200): site_id 77 does not exist"]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda e: e["halo"]["sites"][2].update(client_id=9), "halo.sites[2] (id 20): client_id 9 does not exist"),
        (
            lambda e: e["halo"]["clients"][1].update(main_site_id=10),
            "halo.clients[1] (id 2): main_site_id 10 is not a site of this client",
        ),
        (lambda e: e["halo"]["users"][1].update(id=100), "halo.users[1]: duplicate id 100"),
        (
            lambda e: e["halo"]["users"][0].update(emailaddress=5),
            "halo.users[0] (id 100): emailaddress: 5 is not of type 'string', 'null'",
        ),
        (
            lambda e: e["halo"]["users"][0].update(companyID=1),
            "halo.users[0] (id 100): Additional properties are not allowed ('companyID' was unexpected)",
        ),
        (
            lambda e: e["halo"]["users"][0].update(customfields=[{"name": "KeepActive", "value": "2"}]),
            "halo.users[0] (id 100): customfields.0.name: 'KeepActive' does not match",
        ),
        (
            lambda e: e["m365"]["tenants"][1].update(customerId=e["m365"]["tenants"][0]["customerId"].upper()),
            "m365.tenants[1]: duplicate customerId",
        ),
        (
            lambda e: e["m365"]["tenants"][0].update(customerId="not-a-guid"),
            "m365.tenants[0] (id not-a-guid): customerId: 'not-a-guid' does not match",
        ),
        (
            lambda e: e["m365"]["tenants"][0].update(defaultDomainName="other.com"),
            "defaultDomainName other.com is not among its domains",
        ),
        (
            lambda e: e["m365"]["tenants"][1]["users"][1].update(id=e["m365"]["tenants"][1]["users"][0]["id"]),
            "m365.tenants[1] (id 22222222-2222-4222-8222-222222222222): duplicate user id",
        ),
        (lambda e: e.pop("m365"), "(estate): 'm365' is a required property"),
        (
            lambda e: e["halo"]["clients"][0]["azure_tenants"][0].update(details_id=9),
            "halo.clients[0] (id 1): azure_tenants[0]: details_id 9 is not an Azure AD connection",
        ),
        (
            lambda e: e["halo"].update(azure_connections=[{"id": 3, "name": "Own", "type": 1}]),
            "halo.clients[0] (id 1): azure_tenants[0]: no details_id and no type-2 connection to default to",
        ),
        (
            lambda e: e["halo"].update(
                azure_connections=[{"id": 1, "name": "A", "type": 2}, {"id": 1, "name": "B", "type": 1}]
            ),
            "halo.azure_connections[1]: duplicate id 1",
        ),
        (
            lambda e: e["halo"].update(azure_connections=[{"id": 1, "type": 2}]),
            "halo.azure_connections[0] (id 1): 'name' is a required property",
        ),
        (
            lambda e: (
                e["halo"]["clients"][0]["azure_tenants"][0].update(id=5),
                e["halo"]["clients"][1]["azure_tenants"].append({"id": 5, "azure_tenant_id": "x"}),
            ),
            "halo.clients[1] (id 2): azure_tenants[0]: duplicate azure_tenants entry id 5",
        ),
        (
            lambda e: e["halo"]["clients"][0]["azure_tenants"].append({"azure_tenant_id": CONTOSO.upper()}),
            "halo.clients[0] (id 1): duplicate azure_tenant_id",
        ),
        (
            lambda e: e["halo"]["sites"][0].update(isinvoicesite="yes"),
            "halo.sites[0] (id 10): isinvoicesite: 'yes' is not of type 'boolean'",
        ),
    ],
)
def test_bad_records_are_named(small_estate: dict[str, Any], mutate: Any, expected: str) -> None:
    mutate(small_estate)
    problems = _problems(small_estate)
    assert any(p.startswith(expected) or expected in p for p in problems), problems


def test_every_problem_is_reported_and_message_lists_them(small_estate: dict[str, Any]) -> None:
    for user in small_estate["halo"]["users"]:
        user["site_id"] = 99
    with pytest.raises(EstateError) as caught:
        load_estate(small_estate)
    assert len(caught.value.problems) == 5
    assert "halo.users[4] (id 201): site_id 99 does not exist" in str(caught.value)


def test_odd_records_real_halo_holds_are_accepted(small_estate: dict[str, Any]) -> None:
    halo = small_estate["halo"]
    halo["azure_connections"] = [{"id": 1, "name": "Microsoft Partner", "type": 2}, {"id": 2, "name": "Own", "type": 1}]
    halo["clients"][0]["azure_tenants"] += [
        {"id": 9, "details_id": 2, "azure_tenant_id": "n/a"},
        {"azure_tenant_id": "n/a"},
    ]  # odd values may repeat
    halo["clients"][1]["name"] = ""
    del halo["clients"][2]["name"]
    halo["sites"][0]["name"] = None
    halo["sites"][1]["isinvoicesite"] = True
    del halo["users"][0]["name"]
    halo["users"][1]["azureoid"] = "n/a"
    halo["users"][2]["azureoid"] = "{5F1C0A2B-0000-4000-8000-0000000000AA}"
    assert load_estate(small_estate) is small_estate


def test_m365_tenants_may_carry_extra_optional_fields(small_estate: dict[str, Any]) -> None:
    small_estate["m365"]["tenants"][0]["gdap"] = {"status": "active"}
    assert load_estate(small_estate) is small_estate


def test_fast_checker_agrees_with_jsonschema_on_bad_values() -> None:
    schema = {
        "type": "object",
        "required": ["id"],
        "additionalProperties": False,
        "properties": {"id": {"type": "integer", "minimum": 1}, "tags": {"type": "array", "items": {"enum": ["a"]}}},
    }
    check = compile_checker(schema)
    assert check({"id": 1, "tags": ["a"]})
    for bad in ({"id": 0}, {"id": True}, {"id": 1, "x": 1}, {}, {"id": 1, "tags": ["b"]}, [], {"id": 1.5}):
        assert not check(bad), bad


def test_fast_checker_refuses_keywords_it_does_not_implement() -> None:
    with pytest.raises(ValueError, match="does not implement"):
        compile_checker({"type": "string", "format": "email"})


def test_fast_checker_accepts_every_valid_record_of_the_estate_schema(small_estate: dict[str, Any]) -> None:
    from halo_sync_pipeline.sandbox.estate import _record_checker

    records = {
        "client": small_estate["halo"]["clients"],
        "site": small_estate["halo"]["sites"],
        "user": small_estate["halo"]["users"],
        "tenant": small_estate["m365"]["tenants"],
    }
    for def_name, values in records.items():
        assert all(_record_checker(def_name)(value) for value in values), def_name
        assert not _record_checker(def_name)({**values[0], "unexpected": 1} if def_name != "tenant" else {})
