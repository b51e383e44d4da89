"""Run alerts: one log line per failed run, and Microsoft Teams cards where the MSP's engineers are.

Teams is optional. When `HALO_SYNC_TEAMS_WEBHOOK_URL` is set, a card is posted (with dagster-msteams)
- for every failed run of any job of this code location, asset-page runs (`__ASSET_JOB`) included;
- for a successful plan or apply run whose `tenant_review` holds deactivations, finds conflicts or
  quarantines Halo records (read from its `review_summary` metadata).
The webhook URL carries its own signature, so it is a secret: it is read when a sensor runs, never
logged, and scrubbed (with the pipeline's client secrets) from every text that leaves the process.
Building a card is pure (`failure_alert`, `review_alert`, `card_payload`); the sensors only read and post.
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlsplit

import dagster as dg

from halo_sync_pipeline import environment
from halo_sync_pipeline.clients.secret_scrubber import SecretScrubber
from halo_sync_pipeline.defs.jobs import halo_sync_apply, halo_sync_plan

TEAMS_WEBHOOK_ENV = environment.TEAMS_WEBHOOK_URL
DAGSTER_URL_ENV = environment.DAGSTER_URL
DEFAULT_DAGSTER_URL = "http://127.0.0.1:3000"
REVIEW_ASSET = dg.AssetKey("tenant_review")
REVIEW_SUMMARY_KEY = "review_summary"
# Secrets the pipeline itself reads: an error text quoting one must not reach a Teams channel.
_SECRET_ENVS = environment.SECRETS
_POST_TIMEOUT_SECONDS = 15  # well inside a sensor tick's time budget
_MAX_NAMES = 20  # per list on a card; a 200-tenant estate must still fit in one Teams message
_REASON_LIMIT = 300

Scrub = Callable[[str], str]


# ---------------------------------------------------------------------------------------- pure: texts


def first_line(text: str | None, limit: int = _REASON_LIMIT) -> str:
    """The first non-blank line of `text`, cut at `limit` ("no message" when there is none)."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[0][:limit] if lines else "no message"


def failure_summary(job_name: str, run_id: str, message: str | None) -> str:
    """One line an alerting hook can forward as is."""
    return f"halo-sync run failed: job={job_name} run_id={run_id} reason={first_line(message)}"


def run_url(run_id: str, base_url: str) -> str:
    return f"{base_url.rstrip('/')}/runs/{run_id}"


@dataclass(frozen=True)
class TeamsAlert:
    """What a card says: a title, plain-text lines and the link to the run."""

    title: str
    lines: tuple[str, ...]
    run_url: str

    def scrubbed(self, scrub: Scrub) -> TeamsAlert:
        return replace(self, title=scrub(self.title), lines=tuple(scrub(line) for line in self.lines))


def failure_alert(job_name: str, run_id: str, step_key: str | None, error: str | None, base_url: str) -> TeamsAlert:
    """The card for a failed run: job, failed step, root error (first line), link."""
    return TeamsAlert(
        title=f"halo-sync run failed: {job_name}",
        lines=(
            f"Job: {job_name}",
            f"Failed step: {step_key}" if step_key else "Failed step: none (the run failed outside its steps)",
            f"Root error: {first_line(error)}",
        ),
        run_url=run_url(run_id, base_url),
    )


def _names(values: Sequence[Any]) -> str:
    shown = [str(v) for v in values[:_MAX_NAMES]]
    more = len(values) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _list(summary: Mapping[str, Any], key: str) -> list[Any]:
    value = summary.get(key)
    return list(value) if isinstance(value, list) else []


def _held_deactivations(summary: Mapping[str, Any]) -> list[tuple[str, int]]:
    entries = [e for e in _list(summary, "held_deactivations") if isinstance(e, Mapping)]
    held = [(str(e.get("tenant")), int(e.get("count") or 0)) for e in entries]
    return [(tenant, count) for tenant, count in held if count > 0]


def review_alert(job_name: str, run_id: str, summary: Mapping[str, Any], base_url: str) -> TeamsAlert | None:
    """The card for a plan that needs a person (`tenant_review`'s `review_summary`), or None when none does.

    It needs one when deactivations are held, tenants conflict or Halo records were quarantined;
    unmatched and unloaded tenants are listed too, but alone they are the daily routine, not an alert.
    """
    held = _held_deactivations(summary)
    conflicts = _list(summary, "conflicts")
    quarantined = int(summary.get("quarantined_records") or 0)
    if not (held or conflicts or quarantined):
        return None
    lines = []
    if held:
        total = sum(count for _, count in held)
        per_tenant = _names([f"{tenant} ({count})" for tenant, count in held])
        lines.append(f"Held deactivations: {total} in {len(held)} tenant(s): {per_tenant}")
    if conflicts:
        lines.append(f"Conflicts: {len(conflicts)} tenant(s): {_names(conflicts)}")
    if quarantined:
        lines.append(f"Quarantined Halo records: {quarantined}")
    for key, label in (("unmatched", "Unmatched"), ("failed_to_load", "Failed to load")):
        if names := _list(summary, key):
            lines.append(f"{label}: {len(names)} tenant(s): {_names(names)}")
    title = f"halo-sync plan needs review: {job_name}"
    return TeamsAlert(title=title, lines=tuple(lines), run_url=run_url(run_id, base_url))


def card_payload(alert: TeamsAlert, *, legacy: bool) -> dict[str, Any]:
    """The message body: an adaptive card (Workflows webhooks) or a hero card (legacy Office 365 connectors)."""
    # Imported here: loading the code location should not pay for requests and dagster-msteams.
    from dagster_msteams import Card
    from dagster_msteams.adaptive_card import AdaptiveCard
    from dagster_msteams.utils import MSTeamsHyperlink, build_message_with_link

    hyperlink = MSTeamsHyperlink(text="Open the run in Dagster", url=alert.run_url)
    link = build_message_with_link(legacy, text="", link=hyperlink).strip()
    if legacy:  # a hero card is one attachment of HTML text
        card = Card()
        texts = [f"<b>{html.escape(alert.title)}</b>", *(html.escape(line) for line in alert.lines), link]
        card.add_attachment("<br>".join(texts))
        return card.payload
    adaptive = AdaptiveCard()
    for text in (f"**{alert.title}**", *alert.lines, link):
        adaptive.add_attachment(text)
    return adaptive.payload


def webhook_scrubber(hook_url: str | None, env: Mapping[str, str] | None = None) -> SecretScrubber:
    """Hides the webhook URL (whole, its path and query, their long parts, also URL-quoted) and the pipeline's secrets."""
    env = os.environ if env is None else env
    scrub = SecretScrubber()
    fragments: list[str] = []
    if hook_url:
        parts = urlsplit(hook_url)
        path_query = parts.path + (f"?{parts.query}" if parts.query else "")
        fragments += [hook_url, path_query, parts.query, parts.path]
        # Signature and ids alone, in case a library prints them re-ordered or decoded.
        pieces = [*parts.path.split("/"), *(p.partition("=")[2] for p in parts.query.split("&"))]
        fragments += [piece for piece in pieces if len(piece) >= 8]
    fragments += [env.get(name, "") for name in _SECRET_ENVS]
    # Longest first: scrubbing a part before the whole would leave the rest of the whole behind.
    for fragment in sorted({f for f in fragments if f and f != "/"}, key=len, reverse=True):
        scrub.add(fragment)
        scrub.add(quote(fragment, safe=""))
    return scrub


# ---------------------------------------------------------------------------------------- posting


def teams_webhook_url() -> str | None:
    return os.environ.get(TEAMS_WEBHOOK_ENV, "").strip() or None


def dagster_url() -> str:
    return os.environ.get(DAGSTER_URL_ENV, "").strip() or DEFAULT_DAGSTER_URL


def post_alert(alert: TeamsAlert, hook_url: str, log: logging.Logger | dg.DagsterLogManager) -> bool:
    """Post one card; a failed post is one scrubbed warning line, never an exception (alerts must not break sensors)."""
    from dagster_msteams.client import TeamsClient

    scrub = webhook_scrubber(hook_url)
    client = TeamsClient(hook_url=hook_url, timeout=_POST_TIMEOUT_SECONDS)
    try:
        client.post_message(card_payload(alert.scrubbed(scrub), legacy=client.is_legacy_webhook()))
    except Exception as exc:  # noqa: BLE001 - requests' and dagster's texts may quote the URL: never re-raise them
        log.warning(f"halo-sync Teams alert not sent: {type(exc).__name__}: {first_line(scrub(str(exc)), 200)}")
        return False
    return True


# ---------------------------------------------------------------------------------------- sensors


def _first_step_failure(context: dg.RunFailureSensorContext) -> tuple[str | None, str | None]:
    """(failed step, root error) of a failed run; (None, the run's failure message) when no step failed."""
    # The run failure event only says which steps failed; the first step's error says why.
    step_failures = context.instance.all_logs(context.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    for event in step_failures:
        error = event.dagster_event.step_failure_data.error if event.dagster_event else None
        if error is None:
            continue
        while error.cause is not None:  # Dagster wraps the op's own exception
            error = error.cause
        return event.step_key, error.message
    return None, context.failure_event.message


# No monitored_jobs: a run failure sensor then watches every job of its code location, `__ASSET_JOB` too.
@dg.run_failure_sensor(
    name="halo_sync_failure_alert",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every failed run of any job here (asset-page runs included): one log line, and a Teams card "
    f"(job, failed step, root error, link) when {TEAMS_WEBHOOK_ENV} is set.",
)
def halo_sync_failure_alert(context: dg.RunFailureSensorContext) -> None:
    run = context.dagster_run
    step_key, error = _first_step_failure(context)
    scrub = webhook_scrubber(teams_webhook_url())
    reason = f"step {step_key}: {error}" if step_key else error
    context.log.error(failure_summary(run.job_name, run.run_id, scrub(reason) if reason else None))
    if hook_url := teams_webhook_url():
        post_alert(failure_alert(run.job_name, run.run_id, step_key, error, dagster_url()), hook_url, context.log)


def review_summary(instance: dg.DagsterInstance, run_id: str) -> Mapping[str, Any] | None:
    """The `review_summary` metadata of the run's `tenant_review` materialisation (None without one)."""
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = record.asset_materialization
        if materialization is None or materialization.asset_key != REVIEW_ASSET:
            continue
        value = materialization.metadata.get(REVIEW_SUMMARY_KEY)
        if isinstance(value, dg.JsonMetadataValue) and isinstance(value.value, Mapping):
            return value.value
    return None


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    name="halo_sync_review_alert",
    monitored_jobs=[halo_sync_plan, halo_sync_apply],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=f"When {TEAMS_WEBHOOK_ENV} is set: a Teams card for a plan that holds deactivations, finds conflicts "
    "or quarantines Halo records (tenant names, counts, link), read from tenant_review's review_summary.",
)
def halo_sync_review_alert(context: dg.RunStatusSensorContext) -> None:
    hook_url = teams_webhook_url()
    if not hook_url:
        return
    run = context.dagster_run
    summary = review_summary(context.instance, run.run_id)
    alert = review_alert(run.job_name, run.run_id, summary, dagster_url()) if summary is not None else None
    if alert is not None:
        post_alert(alert, hook_url, context.log)
