"""The write engine: ordering, toggles, dry run, batching, and isolation of a bad record."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import pandas as pd
import pytest

from halo_sync_pipeline.write_engine import (
    ApplyToggles,
    apply_writes,
    merge_tenant_entries,
    partner_connection_id,
    planned_writes,
)


def _mappings() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "tenant_id": pd.array(["t1", "t2"], dtype="string"),
            "tenant_name": pd.array(["Contoso", "Fabrikam"], dtype="string"),
            "company_id": pd.array([10, pd.NA], dtype="Int64"),
            "company_name": pd.array(["Contoso Ltd", pd.NA], dtype="string"),
            "method": pd.array(["name", "unmatched"], dtype="string"),
            "evidence": pd.array(["name Contoso = Contoso", "no candidate"], dtype="string"),
            "company_update": pd.array(
                [
                    json.dumps(
                        {"id": 10, "azure_tenants": [{"azure_tenant_id": "t1", "azure_tenant_name": "Contoso"}]}
                    ),
                    pd.NA,
                ],
                dtype="string",
            ),
        }
    )


def _changes(rows: list[dict]) -> pd.DataFrame:
    base = {"tenant_id": "t1", "tenant_name": "Contoso", "company_id": 10, "company_name": "Contoso Ltd",
            "contact_id": pd.NA, "user_id": pd.NA, "reason": "new_user", "held": False, "name": pd.NA,
            "email": pd.NA, "phonenumber": pd.NA, "mobilenumber": pd.NA, "evidence": "test"}  # fmt: skip
    frame = pd.DataFrame([base | r for r in rows])
    frame["hold_reason"] = pd.array(["test hold" if held else pd.NA for held in frame["held"]], dtype="string")
    frame["contact_id"] = frame["contact_id"].astype("Int64")
    frame["body"] = frame["body"].astype("string")
    return frame


def _plan(n_creates: int = 5) -> pd.DataFrame:
    rows = [
        {"action": "create", "user_id": f"u{i}", "body": json.dumps({"name": f"user {i}", "site_id": 1})}
        for i in range(n_creates)
    ]
    rows.append(
        {
            "action": "deactivate",
            "contact_id": 7,
            "reason": "gone_from_m365",
            "body": json.dumps({"id": 7, "inactive": True}),
        }
    )
    rows.append(
        {
            "action": "deactivate",
            "contact_id": 8,
            "held": True,
            "reason": "gone_from_m365",
            "body": json.dumps({"id": 8, "inactive": True}),
        }
    )
    rows.append(
        {"action": "ambiguous", "contact_id": 9, "held": True, "reason": "several_contacts_match_upn", "body": pd.NA}
    )
    return planned_writes(_mappings(), _changes(rows))


class Refused(Exception):
    """Halo answered 400: nothing of the batch was written."""

    status_code = 400


class FakeHalo:
    """Records each accepted batch; rejects, whole, any batch containing a body named 'bad'."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[dict]]] = []
        self.next_id = 100
        self.lock = threading.Lock()  # the engine may send several batches at once

    def __call__(self, endpoint: str, bodies: list[dict]) -> list[dict]:
        if any(b.get("name") == "bad" for b in bodies):
            raise Refused("HTTP 400: site_id: 'x' is not of type 'number'")
        with self.lock:
            self.batches.append((endpoint, bodies))  # only batches Halo accepted (a rejected one writes nothing)
            saved = []
            for body in bodies:
                if not body.get("id"):
                    self.next_id += 1
                    body = body | {"id": self.next_id}
                saved.append(body)
        return saved


def test_company_write_backs_go_first_and_unmatched_tenants_never_write():
    plan = _plan()
    assert plan["action"].iloc[0] == "set_tenant_id"
    assert (plan["tenant_id"] == "t2").sum() == 0


def test_dry_run_writes_nothing_and_marks_every_allowed_action():
    halo = FakeHalo()
    applied = apply_writes(_plan(), halo, dry_run=True)
    assert halo.batches == []
    assert applied["outcome"].value_counts().to_dict() == {"dry_run": 7, "held": 2}


def test_live_run_batches_and_returns_new_ids():
    halo = FakeHalo()
    applied = apply_writes(_plan(5), halo, dry_run=False, batch_size=2)
    assert [(e, len(b)) for e, b in halo.batches] == [
        ("Client", 1),
        ("Users", 2),
        ("Users", 2),
        ("Users", 1),
        ("Users", 1),
    ]
    creates = applied[applied["action"] == "create"]
    assert (creates["outcome"] == "applied").all()
    assert sorted(creates["halo_id"].tolist()) == [101, 102, 103, 104, 105]
    assert applied.loc[applied["contact_id"] == 7, "halo_id"].item() == 7
    assert applied.loc[applied["contact_id"] == 8, "outcome"].item() == "held"


@pytest.mark.parametrize("connections", [1, 4])
def test_a_bad_record_fails_alone_while_the_rest_land(connections):
    rows = [
        {"action": "create", "user_id": f"u{i}", "body": json.dumps({"name": "bad" if i == 3 else f"user {i}"})}
        for i in range(8)
    ]
    halo = FakeHalo()
    writes = planned_writes(_mappings(), _changes(rows))
    applied = apply_writes(writes, halo, dry_run=False, batch_size=2, connections=connections)
    creates = applied[applied["action"] == "create"].set_index("user_id")
    assert creates.loc["u3", "outcome"] == "failed"
    assert "not of type" in creates.loc["u3", "error"]
    assert (creates.drop(index="u3")["outcome"] == "applied").all()
    written = [b["name"] for endpoint, batch in halo.batches if endpoint == "Users" for b in batch]
    # Every good record was written exactly once, whatever splitting took place.
    assert sorted(set(written)) == sorted(written) == sorted(f"user {i}" for i in range(8) if i != 3)


@pytest.mark.parametrize(
    ("toggles", "written_actions"),
    [
        (ApplyToggles(allow_creates=False), {"set_tenant_id", "deactivate"}),
        (ApplyToggles(allow_deactivations=False, allow_tenant_id_writes=False), {"create"}),
        (ApplyToggles(tenant_id_writes_only=True), {"set_tenant_id"}),
    ],
)
def test_toggles_limit_what_is_written(toggles, written_actions):
    applied = apply_writes(_plan(), FakeHalo(), toggles=toggles, dry_run=False)
    assert set(applied.loc[applied["outcome"] == "applied", "action"]) == written_actions
    assert set(applied.loc[applied["outcome"] == "skipped", "action"]).isdisjoint(written_actions)


def test_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="batch_size"):
        apply_writes(_plan(), FakeHalo(), dry_run=False, batch_size=0)


class LandsThenDropsConnection:
    """Writes the batch, then loses the answer: the caller cannot know what landed."""

    def __init__(self) -> None:
        self.stored: list[dict] = []

    def __call__(self, endpoint: str, bodies: list[dict]) -> list[dict]:
        self.stored.extend(bodies)
        raise ConnectionError("peer closed connection without sending a complete answer")


def test_creates_whose_outcome_is_unknown_are_never_resent():
    rows = [{"action": "create", "user_id": f"u{i}", "body": json.dumps({"name": f"user {i}"})} for i in range(4)]
    halo = LandsThenDropsConnection()
    applied = apply_writes(planned_writes(_mappings(), _changes(rows)), halo, dry_run=False, batch_size=4,
                           toggles=ApplyToggles(allow_tenant_id_writes=False))  # fmt: skip
    creates = applied[applied["action"] == "create"]
    assert (creates["outcome"] == "failed").all()
    assert creates["error"].str.contains("outcome unknown").all()
    assert sorted(b["name"] for b in halo.stored) == [f"user {i}" for i in range(4)]  # sent once, no duplicate


class FailsWhen(FakeHalo):
    """Records every call; raises `error` on the calls `fails(call number, bodies)` picks and takes the rest."""

    def __init__(self, fails: Callable[[int, list[dict]], bool], error: Exception) -> None:
        super().__init__()
        self.fails, self.error = fails, error
        self.calls: list[list[dict]] = []

    def __call__(self, endpoint: str, bodies: list[dict]) -> list[dict]:
        with self.lock:
            self.calls.append(bodies)
            number = len(self.calls)
        if self.fails(number, bodies):
            raise self.error
        return super().__call__(endpoint, bodies)


def chokes_on(bad_id: int) -> FailsWhen:
    """Halo fails (503, after the client's retries) every batch holding the contact `bad_id`."""
    error = Unavailable("Halo POST /api/Users still answered 503 after retries")
    return FailsWhen(lambda _, bodies: any(body["id"] == bad_id for body in bodies), error)


class Unavailable(Exception):
    status_code = 503


def _deactivations(contact_ids: range) -> pd.DataFrame:
    rows = [{"action": "deactivate", "contact_id": c, "reason": "gone_from_m365",
             "body": json.dumps({"id": c, "inactive": True})} for c in contact_ids]  # fmt: skip
    return planned_writes(_mappings(), _changes(rows))


def test_updates_are_idempotent_so_an_unknown_outcome_is_resent_in_halves():
    halo = chokes_on(12)
    applied = apply_writes(_deactivations(range(10, 14)), halo, dry_run=False, batch_size=4,
                           toggles=ApplyToggles(allow_tenant_id_writes=False))  # fmt: skip
    assert [[body["id"] for body in call] for call in halo.calls] == [[10, 11, 12, 13], [10, 11], [12, 13], [12], [13]]
    written = applied[applied["action"] == "deactivate"]
    outcome = dict(zip(written["contact_id"], written["outcome"], strict=True))
    assert outcome == {10: "applied", 11: "applied", 12: "failed", 13: "applied"}


def test_the_record_halo_chokes_on_is_found_in_a_full_batch_without_tripping_the_breaker():
    halo = chokes_on(1000)  # the first record: every level's first half fails, 8 failures in a row
    applied = apply_writes(_deactivations(range(1000, 1100)), halo, dry_run=False, batch_size=100,
                           toggles=ApplyToggles(allow_tenant_id_writes=False))  # fmt: skip
    written = applied[applied["action"] == "deactivate"]
    failed = written[written["outcome"] == "failed"]
    assert failed["contact_id"].tolist() == [1000] and "503" in failed["error"].iloc[0]
    assert (written["outcome"] == "applied").sum() == 99


def test_in_an_outage_the_apply_stops_sending_after_a_few_failures_in_a_row():
    halo = LandsThenDropsConnection()  # every write is sent and its answer lost
    applied = apply_writes(_deactivations(range(10, 50)), halo, dry_run=False, batch_size=4,
                           toggles=ApplyToggles(allow_tenant_id_writes=False))  # fmt: skip
    # 10 batches of 4; the breaker (4 failures in a row at this batch size) stops the halving of the first.
    assert len(halo.stored) == 4 + 2 + 1 + 1
    written = applied[applied["action"] == "deactivate"]
    assert (written["outcome"] == "failed").all()
    not_sent = written.loc[written["error"].str.startswith("not sent, Halo failed 4 writes in a row"), "contact_id"]
    assert sorted(not_sent) == list(range(12, 50))  # the first batch's second half, and every later batch


class RateLimited(Exception):
    """The client gave up on a 429: Halo's Retry-After outlasted the retry deadline. Nothing was written."""

    status_code = 429


def limit_after(allowed: int) -> FailsWhen:
    """Accepts `allowed` batches, then answers every call as rate limited."""
    return FailsWhen(lambda number, _: number > allowed, RateLimited("Halo POST /api/Users answered 429 after retries"))


def _creates(n: int) -> pd.DataFrame:
    rows = [{"action": "create", "user_id": f"u{i}", "body": json.dumps({"name": f"user {i}"})} for i in range(n)]
    deactivation = {"action": "deactivate", "contact_id": 7, "reason": "gone_from_m365",
                    "body": json.dumps({"id": 7, "inactive": True})}  # fmt: skip
    return planned_writes(_mappings(), _changes([*rows, deactivation]))


def test_a_rate_limited_batch_is_not_split_and_nothing_is_sent_after_it():
    halo = limit_after(2)
    applied = apply_writes(_creates(10), halo, dry_run=False, batch_size=4,
                           toggles=ApplyToggles(allow_tenant_id_writes=False))  # fmt: skip
    # Two batches of 4 landed; the third was refused as a whole (no halves sent); nothing after it was sent.
    assert [len(bodies) for bodies in halo.calls] == [4, 4, 2]
    creates = applied[applied["action"] == "create"].set_index("user_id")
    assert (creates.loc[[f"u{i}" for i in range(8)], "outcome"] == "applied").all()
    assert (creates.loc[["u8", "u9"], "outcome"] == "failed").all()
    assert creates.loc[["u8", "u9"], "error"].str.contains("429").all()
    deactivation = applied[applied["action"] == "deactivate"].iloc[0]
    assert deactivation["outcome"] == "failed"
    assert deactivation["error"].startswith("not sent, Halo's rate limit:") and "429" in deactivation["error"]


def test_with_several_connections_a_rate_limit_stops_the_writes_after_those_in_flight():
    halo = limit_after(1)
    applied = apply_writes(_creates(40), halo, dry_run=False, batch_size=2, connections=4,
                           toggles=ApplyToggles(allow_tenant_id_writes=False))  # fmt: skip
    # 20 create batches and a deactivation: at most the 4 in flight when the limit came were sent after it.
    assert len(halo.calls) <= 1 + 4
    assert all(len(bodies) == 2 for bodies in halo.calls)  # never halved
    outcomes = applied.loc[applied["action"] != "set_tenant_id", "outcome"].value_counts().to_dict()
    assert outcomes == {"applied": 2, "failed": 39}
    failed = applied[applied["outcome"] == "failed"]
    assert failed["error"].str.contains("429").all()


# ------------------------------------------------------------ company write-backs (read-modify-write)

HALO_ENTRY = {
    "id": 4,
    "details_id": 2,
    "client_id": 10,
    "azure_tenant_id": "t-old",
    "azure_tenant_name": "Old",
    "details_name": "Contoso Azure AD",
}


def test_merge_keeps_every_entry_as_halo_returned_it_and_adds_the_new_one():
    planned = {"id": 10, "azure_tenants": [{"azure_tenant_id": "t1", "azure_tenant_name": "Contoso"}]}
    merged = merge_tenant_entries({"id": 10, "azure_tenants": [HALO_ENTRY]}, planned, details_id=1)
    assert merged == {
        "id": 10,
        "azure_tenants": [
            HALO_ENTRY,
            {"azure_tenant_id": "t1", "azure_tenant_name": "Contoso", "details_id": 1},
        ],
    }


def test_merge_writes_nothing_when_halo_has_the_tenant_already():
    planned = {"id": 10, "azure_tenants": [{"azure_tenant_id": "T-OLD", "azure_tenant_name": "Old"}]}
    assert merge_tenant_entries({"id": 10, "azure_tenants": [HALO_ENTRY]}, planned, details_id=1) is None


@pytest.mark.parametrize(
    ("entries", "shape"),
    [("t-old", "str"), ({"azure_tenant_id": "t-old"}, "dict"), ([HALO_ENTRY, "t-other"], "a list holding dict, str")],
)
def test_merge_refuses_a_tenant_list_it_cannot_read_whole(entries, shape):
    # The POST replaces Halo's list: sending only what could be read would delete the rest.
    planned = {"id": 10, "azure_tenants": [{"azure_tenant_id": "t1", "azure_tenant_name": "Contoso"}]}
    with pytest.raises(ValueError, match=f"company 10: Halo's azure_tenants is not a list of objects \\({shape}\\)"):
        merge_tenant_entries({"id": 10, "azure_tenants": entries}, planned, details_id=1)


def test_merge_refuses_another_companys_details():
    planned = {"id": 10, "azure_tenants": [{"azure_tenant_id": "t1", "azure_tenant_name": "Contoso"}]}
    with pytest.raises(ValueError, match="company 10: Halo answered company 11; nothing is sent"):
        merge_tenant_entries({"id": 11, "azure_tenants": [HALO_ENTRY]}, planned, details_id=1)


def test_merge_reads_a_missing_or_null_tenant_list_as_empty():
    planned = {"id": 10, "azure_tenants": [{"azure_tenant_id": "t1", "azure_tenant_name": "Contoso"}]}
    added = {"id": 10, "azure_tenants": [{"azure_tenant_id": "t1", "azure_tenant_name": "Contoso", "details_id": 1}]}
    assert merge_tenant_entries({"id": 10}, planned, details_id=1) == added
    assert merge_tenant_entries({"id": 10, "azure_tenants": None}, planned, details_id=1) == added


def test_write_back_halo_already_has_is_applied_without_a_write():
    halo = FakeHalo()
    # prepare answers None when Halo's company carries the tenant already (a re-run, or done by hand).
    applied = apply_writes(_plan(0), halo, dry_run=False, prepare_write_back=lambda body: None)
    write_back = applied.loc[applied["action"] == "set_tenant_id"].iloc[0]
    assert (write_back["outcome"], write_back["halo_id"]) == ("applied", 10)  # the company's id
    assert [endpoint for endpoint, _ in halo.batches] == ["Users"]  # the deactivation only, no Client POST


@pytest.mark.parametrize(
    ("connections", "message"),
    [([], "Halo has none Microsoft Partner"), ([{"id": 1}, {"id": 3}], r"several \(ids 1, 3\)")],
)
def test_partner_connection_must_be_exactly_one(connections, message):
    with pytest.raises(ValueError, match=message):
        partner_connection_id(connections)
    assert partner_connection_id([{"id": 5, "name": "Microsoft Partner", "type": 2}]) == 5


def test_prepare_failure_fails_that_write_back_alone():
    halo = FakeHalo()

    def prepare(body):
        raise ValueError("Halo has none Microsoft Partner Azure AD connections")

    applied = apply_writes(_plan(2), halo, dry_run=False, prepare_write_back=prepare)
    outcome = dict(zip(applied["action"] + ":" + applied["contact_id"].astype("string").fillna(""), applied["outcome"]))
    assert outcome["set_tenant_id:"] == "failed"
    assert "none Microsoft Partner" in applied.loc[applied["action"] == "set_tenant_id", "error"].iloc[0]
    assert (
        outcome["deactivate:7"] == "applied"
        and (applied.loc[applied["action"] == "create", "outcome"] == "applied").all()
    )


def _write_back_mappings(company_ids: list[int]) -> pd.DataFrame:
    n = len(company_ids)
    return pd.DataFrame(
        {
            "tenant_id": pd.array([f"t{c}" for c in company_ids], dtype="string"),
            "tenant_name": pd.array([f"Tenant {c}" for c in company_ids], dtype="string"),
            "company_id": pd.array(company_ids, dtype="Int64"),
            "company_name": pd.array([f"Company {c}" for c in company_ids], dtype="string"),
            "method": pd.array(["name"] * n, dtype="string"),
            "evidence": pd.array(["test"] * n, dtype="string"),
            "company_update": pd.array(
                [json.dumps({"id": c, "azure_tenants": [{"azure_tenant_id": f"t{c}"}]}) for c in company_ids],
                dtype="string",
            ),
        }
    )


def test_write_backs_are_prepared_several_at_once_each_result_kept_with_its_company():
    company_ids = list(range(10, 22))
    both_inside = threading.Barrier(2, timeout=10)  # passes only if two preparations run at the same time
    running, most = [0], [0]
    lock = threading.Lock()

    def prepare(body):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            if body["id"] in (10, 11):
                both_inside.wait()
            if body["id"] == 13:
                raise ValueError("Halo GET /api/Client/13 answered 404")
            if body["id"] == 14:
                return None  # Halo has the tenant already
            return body | {"prepared": True}
        finally:
            with lock:
                running[0] -= 1

    halo = FakeHalo()
    held = {
        "action": "ambiguous",
        "company_id": 99,
        "contact_id": 9,
        "held": True,
        "reason": "several_contacts_match_upn",
    }
    writes = planned_writes(_write_back_mappings(company_ids), _changes([held | {"body": pd.NA}]))
    applied = apply_writes(writes, halo, dry_run=False, prepare_write_back=prepare, connections=4)
    outcome = dict(zip(applied["company_id"], applied["outcome"], strict=True))
    assert outcome.pop(99) == "held"
    assert outcome[13] == "failed" and "404" in applied.loc[applied["company_id"] == 13, "error"].iloc[0]
    assert outcome[14] == "applied" and applied.loc[applied["company_id"] == 14, "halo_id"].iloc[0] == 14
    assert all(outcome[c] == "applied" for c in company_ids if c not in (13, 14))
    (endpoint, sent), *_ = halo.batches
    assert endpoint == "Client" and [body["id"] for body in sent] == [c for c in company_ids if c not in (13, 14)]
    assert all(body["prepared"] for body in sent)
    assert 2 <= most[0] <= 4


def test_connections_must_be_positive():
    with pytest.raises(ValueError, match="connections must be >= 1"):
        apply_writes(_plan(0), FakeHalo(), dry_run=False, connections=0)


def test_batches_of_one_action_overlap_and_the_next_action_waits_for_all_of_them():
    creates = [
        {"action": "create", "user_id": f"u{i}", "body": json.dumps({"name": f"user {i}", "site_id": 1})}
        for i in range(6)
    ]
    deactivations = [
        {"action": "deactivate", "contact_id": c, "reason": "gone_from_m365", "body": json.dumps({"id": c, "inactive": True})}
        for c in (7, 8)
    ]  # fmt: skip
    halo = FakeHalo()
    first_two = threading.Barrier(2, timeout=10)  # passes only if two create batches are in flight at once
    events: list[tuple[str, str]] = []
    new_ids: dict[str, int] = {}

    def write(endpoint, bodies):
        kind = "write_back" if endpoint == "Client" else "deactivate" if bodies[0].get("inactive") else "create"
        with halo.lock:
            events.append(("start", kind))
        if bodies[0].get("name") in ("user 0", "user 2"):
            first_two.wait()
        saved = halo(endpoint, bodies)
        with halo.lock:
            events.append(("end", kind))
            new_ids.update({record["name"]: record["id"] for record in saved if "name" in record})
        return saved

    writes = planned_writes(_mappings(), _changes(creates + deactivations))
    applied = apply_writes(writes, write, dry_run=False, batch_size=2, connections=3)
    assert (applied.loc[applied["action"] != "set_tenant_id", "outcome"] == "applied").all()
    ends_of_creates = [i for i, event in enumerate(events) if event == ("end", "create")]
    starts_of_deactivations = [i for i, event in enumerate(events) if event == ("start", "deactivate")]
    assert len(ends_of_creates) == 3 and len(starts_of_deactivations) == 1
    assert max(ends_of_creates) < min(starts_of_deactivations)
    # Each create kept its own new id, whatever order the batches landed in.
    created = applied[applied["action"] == "create"]
    for body, halo_id in zip(created["body"], created["halo_id"], strict=True):
        assert new_ids[json.loads(body)["name"]] == halo_id
