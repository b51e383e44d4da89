"""HaloClient against httpx.MockTransport: tokens, retries, paging, reports, upserts, secret hiding."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from halo_sync_pipeline.clients import (
    HaloApiError,
    HaloAuthError,
    HaloClient,
    HaloReportError,
    HaloSession,
    HaloWriteError,
)
from halo_sync_pipeline.clients.halo_reports import SavedReport, contacts_report_sql
from halo_sync_pipeline.clients.retry import RetryPolicy
from tests.clients.resource_defaults import halo_settings

SECRET = "halo-secret-value-1234567890"
TOKEN = "halo-access-token-abcdef"
FAST = RetryPolicy(deadline_s=5.0, wait_initial_s=0.0, wait_max_s=0.0, wait_jitter_s=0.0)
Handler = Callable[[httpx.Request], httpx.Response]


class FakeHalo:
    """Answers authinfo and token; everything else goes to `api`. Records every request."""

    def __init__(self, api: Handler) -> None:
        self.api = api
        self.requests: list[httpx.Request] = []
        self.tokens_issued = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/api/authinfo":
            return httpx.Response(200, json={"auth_url": "https://halo.test/auth"})
        if request.url.path == "/auth/token":
            form = parse_qs(request.content.decode())
            if form.get("client_secret") != [SECRET]:
                return httpx.Response(401, json={"error": "invalid_client"})
            self.tokens_issued += 1
            return httpx.Response(200, json={"access_token": f"{TOKEN}{self.tokens_issued}", "expires_in": 3600})
        return self.api(request)


def make_client(api: Handler, **kwargs: Any) -> tuple[HaloClient, FakeHalo]:
    fake = FakeHalo(api)
    kwargs.setdefault("retry_policy", FAST)
    secret = kwargs.pop("secret", SECRET)
    client = HaloClient(
        "https://halo.test", "client-id", secret, "acme", transport=httpx.MockTransport(fake), **halo_settings(**kwargs)
    )
    return client, fake


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text and TOKEN not in text, text


def test_token_by_client_credentials_with_tenant_then_bearer_and_user_agent() -> None:
    client, fake = make_client(
        lambda r: httpx.Response(200, json={"record_count": 0, "clients": []}), reports_mode=False
    )
    with client:
        assert client.companies() == []
    token_request = next(r for r in fake.requests if r.url.path == "/auth/token")
    assert token_request.url.params["tenant"] == "acme"
    form = parse_qs(token_request.content.decode())
    assert (
        form["grant_type"] == ["client_credentials"] and form["scope"] == ["all"] and form["client_id"] == ["client-id"]
    )
    api_request = fake.requests[-1]
    assert api_request.headers["authorization"] == f"Bearer {TOKEN}1"
    assert api_request.headers["user-agent"].startswith("halo-sync-pipeline/")
    assert SECRET not in str(api_request.url)
    assert client.request_counts.snapshot() == {"GET /api/authinfo": 1, "POST /auth/token": 1, "GET /api/Client": 1}


def test_wrong_secret_is_a_clear_auth_error_without_the_secret() -> None:
    client, _ = make_client(lambda r: httpx.Response(200, json={}), secret="wrong-" + SECRET)
    with client, pytest.raises(HaloAuthError) as caught:
        client.tenant_mappings()
    assert "401" in str(caught.value) and "invalid_client" in str(caught.value)
    assert "wrong-" not in str(caught.value) and SECRET not in repr(client)


def test_429_with_retry_after_and_5xx_and_reset_are_retried() -> None:
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "0"}),
            httpx.Response(503),
            "reset",
            httpx.Response(200, json={"record_count": 1, "clients": [{"id": 1, "name": "A"}]}),
        ]
    )

    def api(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if answer == "reset":
            raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")
        return answer

    client, _ = make_client(api, reports_mode=False)
    with client:
        assert [c["id"] for c in client.companies()] == [1]
    assert client.request_counts.snapshot()["GET /api/Client"] == 4


def test_5xx_until_the_deadline_is_a_clear_error() -> None:
    policy = RetryPolicy(deadline_s=0.2, wait_initial_s=0.01, wait_max_s=0.01, wait_jitter_s=0.0)
    client, _ = make_client(
        lambda r: httpx.Response(500, json={"message": "boom"}), reports_mode=False, retry_policy=policy
    )
    with client, pytest.raises(HaloApiError) as caught:
        client.companies()
    assert "GET /api/Client still answered 500 after retries: boom" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_400_is_not_retried() -> None:
    client, _ = make_client(lambda r: httpx.Response(400, json={"message": "bad page"}), reports_mode=False)
    with client, pytest.raises(HaloApiError, match="answered 400: bad page"):
        client.companies()
    assert client.request_counts.snapshot()["GET /api/Client"] == 1


def test_401_renews_the_token_once() -> None:
    def api(request: httpx.Request) -> httpx.Response:
        if request.headers["authorization"] == f"Bearer {TOKEN}1":
            return httpx.Response(401)
        return httpx.Response(200, json={"record_count": 0, "clients": []})

    client, fake = make_client(api, reports_mode=False)
    with client:
        assert client.companies() == []
    assert fake.tokens_issued == 2


def test_401_after_renewal_is_an_error() -> None:
    client, fake = make_client(lambda r: httpx.Response(401, json={"message": "no"}), reports_mode=False)
    with client, pytest.raises(HaloApiError, match="401"):
        client.companies()
    assert fake.tokens_issued == 2  # one renewal, not a loop


def test_rest_paging_until_record_count() -> None:
    users = [{"id": i, "client_id": 1, "site_id": 1, "name": f"U{i}", "inactive": True} for i in range(1, 6)]

    def api(request: httpx.Request) -> httpx.Response:
        params = request.url.params
        assert params["pageinate"] == "true" and params["includeinactive"] == "true"
        size, page = int(params["page_size"]), int(params["page_no"])
        return httpx.Response(200, json={"record_count": len(users), "users": users[(page - 1) * size : page * size]})

    client, _ = make_client(api, reports_mode=False, page_size=2)
    with client:
        contacts = client.contacts("CFKeep")
    assert [c["id"] for c in contacts] == [1, 2, 3, 4, 5]
    assert client.request_counts.snapshot()["GET /api/Users"] == 3  # inactive: no detail calls


def test_rest_contacts_fetch_the_keep_active_field_for_active_contacts_only() -> None:
    listed = [
        {"id": 1, "client_id": 1, "site_id": 1, "inactive": False},
        {"id": 2, "client_id": 1, "site_id": 1, "inactive": True},
    ]

    def api(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/Users":
            return httpx.Response(200, json={"record_count": 2, "users": listed})
        assert request.url.path == "/api/Users/1" and request.url.params["includedetails"] == "true"
        return httpx.Response(200, json={"id": 1, "customfields": [{"name": "CFKeep", "value": "2"}]})

    client, _ = make_client(api, reports_mode=False)
    with client:
        contacts = client.contacts("CFKeep")
    assert [c["keep_active"] for c in contacts] == ["2", None]


def test_report_is_created_once_then_found_and_loaded() -> None:
    saved: dict[int, dict[str, Any]] = {}

    def api(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/Report" and request.method == "GET":
            search = request.url.params["search"]
            return httpx.Response(
                200, json={"reports": [{"id": i, "name": r["name"]} for i, r in saved.items() if search in r["name"]]}
            )
        if request.url.path == "/api/Report" and request.method == "POST":
            body = json.loads(request.content)
            saved[7] = body[0]
            return httpx.Response(200, json={"id": 7, **body[0]})
        assert request.url.path == "/api/Report/7" and request.url.params["loadreport"] == "true"
        return httpx.Response(200, json={"report": {"rows": [{"id": 1, "name": "A"}]}})

    client, _ = make_client(api)
    with client:
        assert client.companies() == [{"id": 1, "name": "A"}]
    assert "FROM AREA" in saved[7]["sql"]
    second, _ = make_client(api)
    with second:
        assert second.companies() == [{"id": 1, "name": "A"}]
    assert "POST /api/Report" not in second.request_counts.snapshot()


def test_report_load_error_is_raised() -> None:
    def api(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/Report":
            return httpx.Response(200, json={"reports": [{"id": 3, "name": SavedReport("sites", "x").name}]})
        return httpx.Response(200, json={"report": {"rows": [], "load_error": "no such column: sdesc"}})

    from halo_sync_pipeline.clients import halo

    client, _ = make_client(api)
    original = halo.sites_report_sql
    halo.sites_report_sql = lambda: "x"  # type: ignore[assignment]
    try:
        with client, pytest.raises(HaloReportError, match="failed to load: no such column: sdesc"):
            client.sites()
    finally:
        halo.sites_report_sql = original


def test_contacts_report_refuses_an_injected_field_name() -> None:
    with pytest.raises(ValueError, match="not a valid Halo custom field"):
        contacts_report_sql("CF1; DROP TABLE USERS")


def test_tenant_mappings_from_the_type_2_connection() -> None:
    mapping = {
        "id": 7,
        "details_id": 4,
        "azure_tenant_id": "T",
        "azure_tenant_name": "Contoso",
        "client_id": 1,
        "client_name": "Contoso Ltd",
    }

    def api(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/azureadconnection":
            assert request.url.params["type"] == "2"
            return httpx.Response(200, json=[{"id": 4, "name": "Partner", "type": 2}])
        assert request.url.path == "/api/azureadconnection/4"
        assert request.url.params["includedetails"] == "true" and request.url.params["includetenants"] == "true"
        return httpx.Response(200, json={"id": 4, "mappings_client": [mapping | {"extra": 1}]})

    client, fake = make_client(api)
    with client:
        assert client.tenant_mappings() == [mapping]
        assert client.skipped_records == []
        requests = len(fake.requests)
        connections, mappings = client.partner_connections_and_mappings()
        # Both for the cost of the mappings alone: one list request and one per connection.
        assert len(fake.requests) - requests == 2
        assert connections == [{"id": 4, "name": "Partner", "type": 2}] and mappings == [mapping]


def test_odd_connection_and_mapping_records_are_skipped_and_named() -> None:
    def api(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/azureadconnection":
            return httpx.Response(200, json={"records": ["junk", {"name": "no id"}, {"id": 4}]})
        # An older answer without details_id: the entry belongs to the connection it was read from.
        return httpx.Response(
            200,
            json={"mappings_client": [{"id": 8, "azure_tenant_id": "T", "client_id": 1}, {"azure_tenant_id": "U"}, 5]},
        )

    client, _ = make_client(api)
    with client:
        connections, mappings = client.partner_connections_and_mappings()
        assert connections == [{"id": 4, "name": None, "type": 2}]
        assert mappings == [
            {
                "id": 8,
                "details_id": 4,
                "azure_tenant_id": "T",
                "azure_tenant_name": None,
                "client_id": 1,
                "client_name": None,
            }
        ]
        assert client.skipped_records == [
            "Halo /api/azureadconnection record [0] is not an object, skipped: junk",
            "Halo /api/azureadconnection record [1] has no id, skipped: {'name': 'no id'}",
            "Halo /api/azureadconnection/4 mappings_client[1] has no id, skipped: {'azure_tenant_id': 'U'}",
            "Halo /api/azureadconnection/4 mappings_client[2] is not an object, skipped: 5",
        ]
        assert client.azure_connections(type_=1) == [{"id": 4, "name": None, "type": 1}]
        assert len(client.skipped_records) == 2  # reset by each read


def test_company_details_reads_the_detail_record() -> None:
    def api(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/Client/3" and request.url.params["includedetails"] == "true"
        return httpx.Response(200, json={"id": 3, "azure_tenants": []})

    client, _ = make_client(api)
    with client:
        assert client.company_details(3) == {"id": 3, "azure_tenants": []}


def test_rest_rows_under_list_or_detail_names() -> None:
    def api(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/Users":
            return httpx.Response(
                200,
                json={
                    "record_count": 2,
                    "users": [
                        {"id": 1, "client_id": 1, "azure_id": "oid-1", "inactive": False},
                        {"id": 2, "client_id": 1, "azureoid": "oid-2", "inactive": True},
                    ],
                },
            )
        if request.url.path == "/api/Users/1":
            return httpx.Response(200, json={"id": 1, "azureoid": "oid-1", "email2": "a2@x.com", "customfields": []})
        if request.url.path == "/api/Site":
            return httpx.Response(
                200,
                json={
                    "record_count": 2,
                    "sites": [
                        {"id": 10, "client_id": 1, "delivery_address_line1": "1 Way", "isinvoicesite": True},
                        {"id": 11, "client_id": 1, "line1": "2 Way", "isinvoicesite": False},
                    ],
                },
            )
        raise AssertionError(request.url)

    client, _ = make_client(api, reports_mode=False)
    with client:
        contacts = client.contacts("CFKeep")
        assert [(c["azureoid"], c["email2"]) for c in contacts] == [("oid-1", "a2@x.com"), ("oid-2", None)]
        assert [(s["line1"], s["is_main"]) for s in client.sites()] == [("1 Way", True), ("2 Way", False)]


def test_upsert_posts_an_array_and_accepts_object_or_array_answers() -> None:
    seen: list[Any] = []

    def api(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        saved = [{"id": 100 + i, **b} for i, b in enumerate(body)]
        return httpx.Response(200, json=saved[0] if len(saved) == 1 else saved)

    client, _ = make_client(api)
    with client:
        assert client.upsert("Users", [{"name": "A"}]) == [{"id": 100, "name": "A"}]
        assert [r["id"] for r in client.upsert("Client", [{"name": "B"}, {"name": "C"}])] == [100, 101]
        assert client.upsert("Users", []) == []
    assert seen == [[{"name": "A"}], [{"name": "B"}, {"name": "C"}]]


def test_upsert_refusal_carries_status_and_halo_message_but_no_secret() -> None:
    client, _ = make_client(lambda r: httpx.Response(400, json={"message": "element [0]: site_id must be an integer"}))
    with client, pytest.raises(HaloWriteError) as caught:
        client.upsert("Users", [{"site_id": "x"}])
    error = caught.value
    assert error.status_code == 400 and error.halo_message == "element [0]: site_id must be an integer"
    assert_no_secret(str(error), repr(error), repr(client))


def test_upsert_is_not_repeated_after_a_connection_lost_mid_response() -> None:
    calls = 0

    def api(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.RemoteProtocolError("peer closed connection")

    client, _ = make_client(api)
    with client, pytest.raises(HaloWriteError, match="connection failed"):
        client.upsert("Users", [{"name": "A"}])
    assert calls == 1


def test_upsert_validates_its_arguments() -> None:
    client, _ = make_client(lambda r: httpx.Response(200, json=[]), write_batch_size=2)
    with client:
        with pytest.raises(ValueError, match="'Users' or 'Client'"):
            client.upsert("Tickets", [{}])  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="exceeds write_batch_size 2"):
            client.upsert("Users", [{}, {}, {}])


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, lambda token: {"message": f"bad request from token {token} with secret {SECRET}"}),
        (500, lambda token: {"error": f"server saw Authorization: Bearer {token} (secret {SECRET})"}),
        (200, lambda token: f"<html>not json: {token} {SECRET}</html>"),
    ],
    ids=["refusal", "server-error", "not-json"],
)
def test_a_server_echoing_the_secret_or_token_never_puts_them_in_error_text(status, body) -> None:
    # A misbehaving proxy or server may echo credentials back; our errors must scrub them.
    def api(request: httpx.Request) -> httpx.Response:
        token = request.headers["authorization"].removeprefix("Bearer ")
        answer = body(token)
        return httpx.Response(status, json=answer) if isinstance(answer, dict) else httpx.Response(status, text=answer)

    client, fake = make_client(api)
    with client, pytest.raises(HaloApiError) as caught:
        client.upsert("Users", [{"id": 1, "inactive": True}])
    issued = f"{TOKEN}{fake.tokens_issued}"
    for text in (str(caught.value), repr(caught.value), getattr(caught.value, "halo_message", "")):
        assert SECRET not in text and issued not in text, text


def test_clients_sharing_a_session_ask_for_one_token() -> None:
    fake = FakeHalo(lambda r: httpx.Response(200, json={"record_count": 0, "clients": []}))
    session = HaloSession()
    for _ in range(3):
        with HaloClient("https://halo.test", "client-id", SECRET, "acme", transport=httpx.MockTransport(fake),
                        reports_mode=False, session=session, **halo_settings(retry_policy=FAST)) as client:  # fmt: skip
            assert client.companies() == []
    paths = [r.url.path for r in fake.requests]
    assert paths.count("/auth/token") == 1 and paths.count("/api/authinfo") == 1 and paths.count("/api/Client") == 3
    assert TOKEN not in repr(session)
