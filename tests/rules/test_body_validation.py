"""Body validation once per shape (`halo_api_schema.check_bodies`, `plan_checks._body_problems`) finds exactly
what validating every body on its own finds, record by record."""

import json

import pandas as pd
import pytest

from halo_sync_pipeline.halo_api_schema import body_shape, check_bodies, check_body
from halo_sync_pipeline.rules.plan_checks import CHANGE_FAILURE_COLUMNS, _body_problems

GOOD = {"client_id": 7, "site_id": 70, "name": "Ann Lee", "firstname": "Ann", "surname": "Lee",
        "emailaddress": "ann@contoso.com", "azureoid": "0b9c6c1e-0000-4000-8000-000000000001"}  # fmt: skip

BODIES = [
    GOOD,
    GOOD | {"name": "Bob Ray", "emailaddress": "bob@contoso.com"},  # same shape, other values
    GOOD | {"emailaddress": 5},  # wrong type
    GOOD | {"emailaddress": 6},  # same bad shape, another value: its own message
    GOOD | {"companyID": 7},  # unknown field
    GOOD | {"client_id": 7.0},  # an integral float is a JSON Schema integer
    GOOD | {"client_id": 7.5},
    GOOD | {"client_id": True},  # a bool is no integer
    GOOD | {"inactive": "no"},
    GOOD | {"customfields": [{"name": "CFM365SyncKeepActive", "value": "2"}]},
    GOOD | {"customfields": [{"name": "CFM365SyncKeepActive", "value": "2"}, {"name": 3, "value": "2"}]},
    GOOD | {"customfields": "2"},
    [GOOD],
    "text",
    None,
]


def test_check_bodies_equals_check_body_one_by_one():
    assert check_bodies("Users", BODIES) == [check_body("Users", body) for body in BODIES]
    found = check_bodies("Users", BODIES)
    assert [p.ok for p in found[:2]] == [True, True]
    assert found[2].errors == ["emailaddress: 5 is not of type 'string', 'null'"]
    assert found[3].errors == ["emailaddress: 6 is not of type 'string', 'null'"]
    assert found[4].unknown_fields == ["companyID"] and not found[4].errors
    assert found[5].ok and not found[6].ok and not found[7].ok


def test_values_under_value_constrained_properties_are_part_of_the_shape():
    # Area.portalcolour has maxLength 7: a colour of 8 characters must not share a verdict with one of 7.
    short, long = {"id": 1, "portalcolour": "#abcdef"}, {"id": 1, "portalcolour": "#abcdef0"}
    assert body_shape("Client", short) != body_shape("Client", long)
    assert body_shape("Users", GOOD) == body_shape("Users", GOOD | {"name": "x" * 300})
    found = check_bodies("Client", [short, long])
    assert found == [check_body("Client", short), check_body("Client", long)]
    assert found[0].ok and not found[1].ok


def test_unknown_endpoint_is_refused():
    with pytest.raises(KeyError):
        check_bodies("Tickets", [{}])


def _old_body_problems(changes: pd.DataFrame) -> pd.DataFrame:
    """The validation as it was before shapes: every distinct body text checked on its own."""
    rows = []
    for r in changes[["tenant_id", "contact_id", "user_id", "company_id", "action", "body"]].itertuples(index=False):
        ids = {"tenant_id": r.tenant_id, "contact_id": r.contact_id, "user_id": r.user_id}
        if r.action == "ambiguous":
            if not pd.isna(r.body):
                rows.append({**ids, "check": "ambiguous_with_body", "detail": "an ambiguous row must not write"})
            continue
        if pd.isna(r.body):
            rows.append({**ids, "check": "missing_body", "detail": f"{r.action} without a body"})
            continue
        try:
            body = json.loads(r.body)
        except json.JSONDecodeError as exc:
            rows.append({**ids, "check": "invalid_body", "detail": f"body is not JSON: {exc}"})
            continue
        problems = check_body("Users", body)
        detail = "; ".join(
            problems.errors + [f"unknown field {n!r} (Halo would drop it)" for n in problems.unknown_fields]
        )
        if not detail:
            if r.action == "create" and ("id" in body or body.get("client_id") != r.company_id):
                detail = f"create body must have no id and client_id {r.company_id}"
            elif r.action != "create" and body.get("id") != r.contact_id:
                detail = f"body id {body.get('id')!r} is not the contact {r.contact_id}"
        if detail:
            rows.append({**ids, "check": "invalid_body", "detail": detail})
    return pd.DataFrame(rows, columns=CHANGE_FAILURE_COLUMNS).astype({"check": "string", "detail": "string"})


def _changes() -> pd.DataFrame:
    def row(n: int, action: str, body: object, contact_id: object = pd.NA) -> dict:
        text = body if body is None or isinstance(body, str) else json.dumps(body)
        return {"tenant_id": "t1", "contact_id": contact_id, "user_id": f"u{n}", "company_id": 7, "action": action,
                "body": text}  # fmt: skip

    rows = [row(i, "create", GOOD | {"name": f"Person {i}"}) for i in range(50)]
    rows += [
        row(50, "create", GOOD | {"emailaddress": 5}),  # wrong type
        row(51, "create", GOOD | {"lastName": "Lee"}),  # unknown field
        row(52, "create", '{"client_id": 7, "name": '),  # not JSON
        row(53, "create", GOOD | {"client_id": 8}),  # wrong company
        row(54, "create", GOOD | {"id": 9}),  # a create with an id
        row(55, "pair", {"id": 300, "azureoid": GOOD["azureoid"], "inactive": False}, contact_id=300),
        row(56, "pair", {"id": 301, "azureoid": GOOD["azureoid"], "inactive": False}, contact_id=302),  # wrong target
        row(57, "deactivate", {"id": 303, "inactive": "yes please"}, contact_id=303),
        row(58, "deactivate", None, contact_id=304),  # no body
        row(59, "ambiguous", None),
        row(60, "ambiguous", {"id": 305}),  # an ambiguous row with a body
        row(61, "reactivate", [{"id": 306}], contact_id=306),  # not an object
    ]
    frame = pd.DataFrame(rows)
    return frame.astype({"contact_id": "Int64", "body": "string", "action": "string", "tenant_id": "string",
                         "user_id": "string"})  # fmt: skip


def test_body_problems_by_shape_equal_the_one_by_one_result():
    changes = _changes()
    found = _body_problems(changes)
    pd.testing.assert_frame_equal(found, _old_body_problems(changes))
    by_user = dict(zip(found["user_id"], zip(found["check"], found["detail"])))
    assert set(by_user) == {f"u{i}" for i in range(50, 62)} - {"u55", "u59"}
    assert by_user["u50"] == ("invalid_body", "emailaddress: 5 is not of type 'string', 'null'")
    assert by_user["u51"] == ("invalid_body", "unknown field 'lastName' (Halo would drop it)")
    assert by_user["u52"][1].startswith("body is not JSON: ")
    assert by_user["u53"] == ("invalid_body", "create body must have no id and client_id 7")
    assert by_user["u56"] == ("invalid_body", "body id 301 is not the contact 302")
    assert by_user["u57"] == ("invalid_body", "inactive: 'yes please' is not of type 'boolean', 'null'")
    assert by_user["u58"] == ("missing_body", "deactivate without a body")
    assert by_user["u60"] == ("ambiguous_with_body", "an ambiguous row must not write")
    assert by_user["u61"][1] == "expected a JSON object, got list"
