"""Teams alerts, posted over real HTTP to a local receiver standing in for a Teams incoming webhook.

The receiver records every POST; the tests read the cards it got: what a failed run and a plan needing
review say, that the webhook URL (its signature) and the sandbox's secrets never appear in them, and
that a Teams that refuses or is down costs one scrubbed log line, not a broken sensor.
"""

import json
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

import halo_sync_pipeline.sandbox
from halo_sync_pipeline.defs.alerts import (
    DAGSTER_URL_ENV,
    TEAMS_WEBHOOK_ENV,
    TeamsAlert,
    card_payload,
    failure_alert,
    halo_sync_failure_alert,
    halo_sync_review_alert,
    review_alert,
    webhook_scrubber,
)
from tests.pipeline.harness import run_job

EXAMPLE_ESTATE = Path(halo_sync_pipeline.sandbox.__file__).parent / "example_estate.json"

SIGNATURE = "q7Zt0pS3cr3tS1gnatur3Xv9WkLmN4bC2dE8fG"
WEBHOOK_PATH = "/workflows/5b1e0c2a9f6d4e7b8a3c1d2e4f5a6b7c/triggers/manual/paths/invoke"
WEBHOOK_QUERY = f"api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={SIGNATURE}"
DAGSTER_URL = "https://dagster.msp.example/"
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)

REVIEW_SUMMARY = {
    "held_deactivations": [{"tenant": "Contoso", "count": 11}, {"tenant": "Fabrikam Inc", "count": 3}],
    "conflicts": ["Northwind Traders"],
    "unmatched": ["Tailspin Toys"],
    "failed_to_load": ["Wingtip Toys"],
    "quarantined_records": 6,
}
NOTHING_TO_REVIEW = {
    "held_deactivations": [],
    "conflicts": [],
    "unmatched": ["Tailspin Toys"],
    "failed_to_load": [],
    "quarantined_records": 0,
}


# ---------------------------------------------------------------------------------------- the receiver


@dataclass
class Receiver:
    """A Teams incoming webhook on loopback: answers `status`/`body` ("{path}" echoes the request path)."""

    port: int = 0
    status: int = 202
    body: str = ""
    posts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{WEBHOOK_PATH}?{WEBHOOK_QUERY}"

    def texts(self) -> list[str]:
        """Every text block of every card received, one string per card."""
        return ["\n".join(block["text"] for block in post["attachments"][0]["content"]["body"]) for post in self.posts]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length", "0"))
            state.posts.append(json.loads(self.rfile.read(length)))
            answer = state.body.replace("{path}", self.path).encode()
            self.send_response(state.status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:  # keep pytest's output for the sensor's lines
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def teams(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Receiver:
    """The receiver configured as the deployment's Teams webhook, with run links to DAGSTER_URL."""
    monkeypatch.setenv(TEAMS_WEBHOOK_ENV, receiver.url)
    monkeypatch.setenv(DAGSTER_URL_ENV, DAGSTER_URL)
    return receiver


def assert_no_webhook_secret(text: str) -> None:
    for secret in (SIGNATURE, WEBHOOK_PATH, WEBHOOK_QUERY, "5b1e0c2a9f6d4e7b8a3c1d2e4f5a6b7c"):
        assert secret not in text


# ---------------------------------------------------------------------------------------- runs and sensors


@dg.asset(name="tenant_review")
def fake_tenant_review(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Stands in for the lead's asset: only its `review_summary` metadata matters to the alert."""
    summary = context.run.tags.get("test/summary", "{}")
    return dg.MaterializeResult(metadata={"review_summary": dg.MetadataValue.json(json.loads(summary))})


@dg.asset
def halo_companies() -> None:
    raise RuntimeError("Halo /auth/token answered 401 invalid_client\nsecond line of detail")


_TEST_DEFS = dg.Definitions(
    assets=[fake_tenant_review, halo_companies],
    jobs=[
        dg.define_asset_job("halo_sync_plan", selection=["tenant_review"]),
        dg.define_asset_job("some_other_job", selection=["tenant_review"]),
    ],
)


def start_cursor(sensor: dg.SensorDefinition, instance: dg.DagsterInstance) -> str | None:
    """A run status sensor's first tick only sets its cursor: later ticks see the runs after it."""
    context = dg.build_sensor_context(instance=instance)
    sensor.evaluate_tick(context)
    return context.cursor


def tick(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor))


def run_review(instance: dg.DagsterInstance, job_name: str, summary: dict[str, Any]) -> dg.ExecuteInProcessResult:
    job = _TEST_DEFS.resolve_job_def(job_name)
    result = job.execute_in_process(instance=instance, tags={"test/summary": json.dumps(summary)})
    assert result.success
    return result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def failure_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "halo-sync run failed" in line]


# ---------------------------------------------------------------------------------------- pure message building


def test_failure_alert_names_job_step_root_error_and_run_link():
    alert = failure_alert(
        "halo_sync_apply", "run-1", "halo_companies", "RuntimeError: 401\nTraceback ...", "http://h:3000/"
    )
    assert alert.lines == ("Job: halo_sync_apply", "Failed step: halo_companies", "Root error: RuntimeError: 401")
    assert alert.run_url == "http://h:3000/runs/run-1"
    no_step = failure_alert("halo_sync_plan", "run-2", None, None, "http://h:3000")
    assert no_step.lines[1:] == ("Failed step: none (the run failed outside its steps)", "Root error: no message")


def test_review_alert_lists_tenant_names_and_counts():
    alert = review_alert("halo_sync_plan", "run-9", REVIEW_SUMMARY, DAGSTER_URL)
    assert alert is not None
    assert alert.title == "halo-sync plan needs review: halo_sync_plan"
    assert alert.lines == (
        "Held deactivations: 14 in 2 tenant(s): Contoso (11), Fabrikam Inc (3)",
        "Conflicts: 1 tenant(s): Northwind Traders",
        "Quarantined Halo records: 6",
        "Unmatched: 1 tenant(s): Tailspin Toys",
        "Failed to load: 1 tenant(s): Wingtip Toys",
    )
    assert alert.run_url == "https://dagster.msp.example/runs/run-9"


@pytest.mark.parametrize(
    "summary",
    [
        NOTHING_TO_REVIEW,
        {"held_deactivations": [{"tenant": "Contoso", "count": 0}], "conflicts": [], "quarantined_records": 0},
        {},
    ],
)
def test_review_alert_is_none_without_held_deactivations_conflicts_or_quarantine(summary):
    assert review_alert("halo_sync_plan", "r", summary, DAGSTER_URL) is None


@pytest.mark.parametrize(
    "key, summary",
    [
        ("held", {"held_deactivations": [{"tenant": "Contoso", "count": 1}]}),
        ("conflict", {"conflicts": ["Contoso"]}),
        ("quarantine", {"quarantined_records": 1}),
    ],
)
def test_each_problem_alone_is_worth_an_alert(key, summary):
    assert review_alert("halo_sync_plan", "r", summary, DAGSTER_URL) is not None


def test_review_alert_shortens_long_lists_to_fit_one_message():
    summary = {"conflicts": [f"Tenant {i:03}" for i in range(200)]}
    (line,) = review_alert("halo_sync_plan", "r", summary, DAGSTER_URL).lines
    assert line.startswith("Conflicts: 200 tenant(s): Tenant 000, Tenant 001,")
    assert line.endswith("Tenant 019 and 180 more")


def test_card_payload_is_an_adaptive_card_or_a_legacy_hero_card():
    alert = TeamsAlert("Title", ("Smith & Sons <ltd>",), "http://h/runs/r")
    adaptive = card_payload(alert, legacy=False)
    content = adaptive["attachments"][0]["content"]
    assert content["type"] == "AdaptiveCard"
    assert [b["text"] for b in content["body"]] == [
        "**Title**",
        "Smith & Sons <ltd>",
        "[Open the run in Dagster](http://h/runs/r)",
    ]
    hero = card_payload(alert, legacy=True)["attachments"][0]
    assert hero["contentType"] == "application/vnd.microsoft.card.hero"
    assert hero["content"]["text"] == (
        "<b>Title</b><br>Smith &amp; Sons &lt;ltd&gt;<br><a href='http://h/runs/r'>Open the run in Dagster</a>"
    )


def test_webhook_scrubber_hides_the_url_its_parts_and_the_pipeline_secrets():
    url = f"https://prod-01.westeurope.logic.azure.com:443{WEBHOOK_PATH}?{WEBHOOK_QUERY}"
    scrub = webhook_scrubber(url, env={"HALO_CLIENT_SECRET": "halo-secret-value"})
    for text in (
        url,
        f"Max retries exceeded with url: {WEBHOOK_PATH}?{WEBHOOK_QUERY}",
        f"sig={SIGNATURE}",
        f"quoted {url.replace(':', '%3A').replace('/', '%2F')}",
        "halo-secret-value",
    ):
        scrubbed = scrub(text)
        assert_no_webhook_secret(scrubbed)
        assert "logic.azure.com:443/workflows" not in scrubbed and "halo-secret-value" not in scrubbed
    assert scrub("Halo answered 401 invalid_client") == "Halo answered 401 invalid_client"


# ---------------------------------------------------------------------------------------- failure sensor


def test_a_failed_asset_page_run_posts_job_step_root_error_and_link(tmp_path, teams, capfd):
    """`__ASSET_JOB` (Materialize on an asset page) is watched too: the sensor has no monitored_jobs."""
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        cursor = start_cursor(halo_sync_failure_alert, instance)
        job = _TEST_DEFS.resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey("halo_companies")], raise_on_error=False
        )
        assert result.dagster_run.job_name == "__ASSET_JOB" and not result.success
        capfd.readouterr()
        tick(halo_sync_failure_alert, instance, cursor)
    (card,) = teams.texts()
    assert card.splitlines() == [
        "**halo-sync run failed: __ASSET_JOB**",
        "Job: __ASSET_JOB",
        "Failed step: halo_companies",
        "Root error: RuntimeError: Halo /auth/token answered 401 invalid_client",
        f"[Open the run in Dagster](https://dagster.msp.example/runs/{result.run_id})",
    ]
    assert_no_webhook_secret(json.dumps(teams.posts))
    (line,) = failure_lines(capfd.readouterr().err)  # the log line stays
    assert line.endswith(
        f"job=__ASSET_JOB run_id={result.run_id} reason=step halo_companies: "
        "RuntimeError: Halo /auth/token answered 401 invalid_client"
    )


def test_without_the_webhook_variable_nothing_is_posted_and_the_line_stays(tmp_path, receiver, monkeypatch, capfd):
    monkeypatch.delenv(TEAMS_WEBHOOK_ENV, raising=False)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        cursor = start_cursor(halo_sync_failure_alert, instance)
        job = _TEST_DEFS.resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey("halo_companies")], raise_on_error=False
        )
        capfd.readouterr()
        tick(halo_sync_failure_alert, instance, cursor)
    assert receiver.posts == []
    (line,) = failure_lines(capfd.readouterr().err)
    assert f"run_id={result.run_id}" in line
    assert "Teams" not in line


@pytest.mark.parametrize("teams_down", [False, True], ids=["teams answers 400", "teams unreachable"])
def test_a_failed_post_is_one_scrubbed_line_and_no_sensor_error(tmp_path, teams, monkeypatch, capfd, teams_down):
    # A 400 that echoes the request path (signature included) must not bring it into our logs.
    teams.status, teams.body = 400, "Bad payload for {path}"
    if teams_down:  # the same URL on a loopback port nobody listens on: connection refused
        teams.port = free_port()
        monkeypatch.setenv(TEAMS_WEBHOOK_ENV, teams.url)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        cursor = start_cursor(halo_sync_failure_alert, instance)
        job = _TEST_DEFS.resolve_implicit_global_asset_job_def()
        job.execute_in_process(instance=instance, asset_selection=[dg.AssetKey("halo_companies")], raise_on_error=False)
        capfd.readouterr()
        data = tick(halo_sync_failure_alert, instance, cursor)
    err = capfd.readouterr().err
    assert all(reaction.error is None for reaction in data.dagster_run_reactions)  # the sensor did not fail
    not_sent = [line for line in err.splitlines() if "Teams alert not sent" in line]
    assert len(not_sent) == 1
    assert ("ConnectionError" if teams_down else "RequestException: Bad payload for ***") in not_sent[0]
    assert_no_webhook_secret(err)
    assert len(failure_lines(err)) == 1
    assert len(teams.posts) == (0 if teams_down else 1)


def test_a_real_failed_run_against_the_sandbox_posts_no_secret(
    tmp_path, sandbox_factory, small_estate, teams, monkeypatch
):
    """A whole asset-page run of the real definitions, its Halo login refused: the card names the step, no secret."""
    sandbox = sandbox_factory(small_estate)
    wrong_secret = "wrong-" + sandbox.env["HALO_CLIENT_SECRET"][::-1]
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        cursor = start_cursor(halo_sync_failure_alert, instance)
        result = run_job(
            sandbox, instance, monkeypatch, job_name="__ASSET_JOB", extra_env={"HALO_CLIENT_SECRET": wrong_secret}
        )
        assert not result.success
        tick(halo_sync_failure_alert, instance, cursor)
    (card,) = teams.texts()
    assert "Job: __ASSET_JOB" in card
    assert re.search(r"^Failed step: halo_\w+$", card, re.MULTILINE), card
    assert f"/runs/{result.run_id})" in card
    payload = json.dumps(teams.posts)
    assert_no_webhook_secret(payload)
    for name in ("HALO_CLIENT_SECRET", "M365_CLIENT_SECRET", "M365_REFRESH_TOKEN"):
        assert sandbox.env[name] not in payload
    assert wrong_secret not in payload


# ---------------------------------------------------------------------------------------- review sensor


def test_a_plan_needing_review_posts_tenant_names_counts_and_link(tmp_path, teams):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        cursor = start_cursor(halo_sync_review_alert, instance)
        result = run_review(instance, "halo_sync_plan", REVIEW_SUMMARY)
        tick(halo_sync_review_alert, instance, cursor)
    (card,) = teams.texts()
    assert card.splitlines()[:4] == [
        "**halo-sync plan needs review: halo_sync_plan**",
        "Held deactivations: 14 in 2 tenant(s): Contoso (11), Fabrikam Inc (3)",
        "Conflicts: 1 tenant(s): Northwind Traders",
        "Quarantined Halo records: 6",
    ]
    assert card.endswith(f"[Open the run in Dagster](https://dagster.msp.example/runs/{result.run_id})")
    payload = json.dumps(teams.posts)
    assert not GUID.search(payload.replace(result.run_id, "")), "tenants are named, not given as GUIDs"
    assert_no_webhook_secret(payload)


def test_review_sensor_stays_quiet_for_a_clean_plan_other_jobs_and_without_the_variable(tmp_path, teams, monkeypatch):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        cursor = start_cursor(halo_sync_review_alert, instance)
        run_review(instance, "halo_sync_plan", NOTHING_TO_REVIEW)
        run_review(instance, "some_other_job", REVIEW_SUMMARY)  # not a plan or apply job
        tick(halo_sync_review_alert, instance, cursor)
        assert teams.posts == []
        monkeypatch.delenv(TEAMS_WEBHOOK_ENV)
        cursor = start_cursor(halo_sync_review_alert, instance)
        run_review(instance, "halo_sync_plan", REVIEW_SUMMARY)
        tick(halo_sync_review_alert, instance, cursor)
        assert teams.posts == []


def test_a_real_plan_on_the_example_estate_posts_its_review(tmp_path, sandbox_factory, teams, monkeypatch):
    """The real `halo_sync_plan` and `tenant_review` against the sandbox: the card names tenants, never their GUIDs."""
    estate = json.loads(EXAMPLE_ESTATE.read_text())
    sandbox = sandbox_factory(estate)
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        cursor = start_cursor(halo_sync_review_alert, instance)
        result = run_job(
            sandbox,
            instance,
            monkeypatch,
            job_name="halo_sync_plan",
            extra_env={"HALO_SYNC_STORAGE_DIR": str(tmp_path / "storage")},
        )
        assert result.success
        tick(halo_sync_review_alert, instance, cursor)
    (card,) = teams.texts()
    lines = card.splitlines()
    assert lines[0] == "**halo-sync plan needs review: halo_sync_plan**"
    # The example estate plants a mass deactivation held by the guard, conflicts and odd Halo records.
    assert any(line.startswith("Held deactivations: ") and "Wide Partners plc (11)" in line for line in lines), card
    assert any(line.startswith("Conflicts: 3 tenant(s): ") for line in lines), card
    assert "Quarantined Halo records: 6" in lines
    assert lines[-1] == f"[Open the run in Dagster](https://dagster.msp.example/runs/{result.run_id})"
    payload = json.dumps(teams.posts)
    tenant_ids = [tenant["customerId"] for tenant in estate["m365"]["tenants"]]
    assert not [t for t in tenant_ids if t.lower() in payload.lower()], "tenants are named, not given as GUIDs"
    assert_no_webhook_secret(payload)
    for name in ("HALO_CLIENT_SECRET", "M365_CLIENT_SECRET", "M365_REFRESH_TOKEN"):
        assert sandbox.env[name] not in payload
