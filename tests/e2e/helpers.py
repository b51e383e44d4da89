"""Process management shared by the end-to-end tests and scripts/screenshot_lineage.py.

Everything started here runs in its own session/process group and is always stopped: SIGTERM to
the group, a bounded wait, then SIGKILL to the group and to any straggler still in the session.
Servers bind to 127.0.0.1 on free ports only. Log tails shown in failure messages are scrubbed
of secret values first.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT_DAGSTER_YAML = REPO_ROOT / "dagster.yaml"
WORKSPACE_YAML = REPO_ROOT / "workspace.yaml"
LIVE_RUN_CONFIG: dict[str, Any] = {"ops": {"applied_changes": {"config": {"dry_run": False}}}}

# Environment variable names whose values must never appear in anything we print.
_SECRET_MARKERS = ("SECRET", "TOKEN", "PASSWORD", "PASSWD")


# ---------------------------------------------------------------------------------------------
# small utilities


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def secret_values(env: Mapping[str, str]) -> list[str]:
    """Values of the secret-looking variables of `env` (long enough to be worth scrubbing)."""
    return [v for k, v in env.items() if any(m in k.upper() for m in _SECRET_MARKERS) and v and len(v) >= 4]


def redact(text: str, secrets: Iterable[str]) -> str:
    for value in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def tail(path: Path, secrets: Iterable[str] = (), max_chars: int = 6000) -> str:
    """The end of a log file, secrets scrubbed (for failure messages)."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return redact(text[-max_chars:], secrets)


def wait_until(predicate, *, timeout: float, interval: float = 0.5, what: str = "condition"):
    """Poll `predicate` until it returns a truthy value (returned) or `timeout` seconds pass (TimeoutError)."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last error on timeout
            last_exc = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"timed out after {timeout:.0f}s waiting for {what}"
                + (f" (last error: {last_exc!r})" if last_exc else "")
            )
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# process groups


def _session_members(sid: int) -> list[int]:
    """PIDs of live processes whose session id is `sid` (Linux /proc)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
            # the comm field may contain spaces/parentheses: split after the last ')'
            fields = stat[stat.rindex(")") + 2 :].split()
            state, session = fields[0], int(fields[3])
        except (OSError, ValueError, IndexError):
            continue
        if session == sid and state != "Z":
            members.append(int(entry))
    return members


def stop_process_tree(proc: subprocess.Popen, *, timeout: float = 30.0) -> int | None:
    """Stop a process started with `start_new_session=True` and everything in its session.

    SIGTERM to the process group, wait up to `timeout` s, then SIGKILL to the group and to any
    process still in the session (grandchildren that made their own group). Returns the exit code.
    """
    pgid = proc.pid  # start_new_session: pid == pgid == sid
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
    # Children may outlive the leader (or have left its group): give them a moment, then kill.
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: not _session_members(pgid), timeout=min(timeout, 15), interval=0.3, what="session to empty")
    for pid in _session_members(pgid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return proc.returncode


@contextlib.contextmanager
def managed_process(
    cmd: list[str], *, env: Mapping[str, str], cwd: Path, log_path: Path, stop_timeout: float = 30.0
) -> Iterator[subprocess.Popen]:
    """Run `cmd` in its own session, output to `log_path`; always stopped on exit."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        stop_process_tree(proc, timeout=stop_timeout)


# ---------------------------------------------------------------------------------------------
# dagster dev

_WORKSPACE_QUERY = """
query Workspace {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { repositories { name } }
          ... on PythonError { message }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""


@dataclass
class DagsterDev:
    """A running `dagster dev` (webserver + daemon + code server) on 127.0.0.1."""

    host: str
    port: int
    dagster_home: Path
    storage_dir: Path
    log_path: Path
    process: subprocess.Popen
    secrets: list[str] = field(default_factory=list, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def graphql(self, query: str, variables: dict[str, Any] | None = None, *, timeout: float = 60.0) -> dict[str, Any]:
        """POST a GraphQL query; returns `data`, raises on transport or GraphQL errors."""
        response = httpx.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=timeout
        )
        response.raise_for_status()
        payload = response.json()
        if payload.get("errors"):
            raise RuntimeError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]

    def client(self):
        from dagster_graphql import DagsterGraphQLClient

        return DagsterGraphQLClient(self.host, port_number=self.port, timeout=60)

    def log_tail(self, max_chars: int = 6000) -> str:
        return tail(self.log_path, self.secrets, max_chars)

    def location_status(self) -> tuple[str, str, str | None]:
        """(location name, loadStatus, error message or None) of the single code location."""
        data = self.graphql(_WORKSPACE_QUERY, timeout=10)
        workspace = data["workspaceOrError"]
        if workspace["__typename"] != "Workspace":
            return ("?", "ERROR", workspace.get("message"))
        entries = workspace["locationEntries"]
        if not entries:
            return ("?", "LOADING", None)
        entry = entries[0]
        loaded = entry["locationOrLoadError"]
        error = loaded.get("message") if loaded and loaded["__typename"] == "PythonError" else None
        return (entry["name"], entry["loadStatus"], error)


def dagster_env(
    base: Mapping[str, str], dagster_home: Path, storage_dir: Path, extra: Mapping[str, str]
) -> dict[str, str]:
    env = dict(base)
    # never inherit the caller's instance, and keep the sandbox's variables authoritative
    env.update(extra)
    env["DAGSTER_HOME"] = str(dagster_home)
    env["HALO_SYNC_STORAGE_DIR"] = str(storage_dir)
    env["DAGSTER_DISABLE_TELEMETRY"] = "1"
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


@contextlib.contextmanager
def dagster_dev(
    extra_env: Mapping[str, str],
    *,
    workdir: Path | None = None,
    startup_timeout: float = 180.0,
    stop_timeout: float = 30.0,
) -> Iterator[DagsterDev]:
    """`dagster dev -w workspace.yaml` on a free port with a throw-away DAGSTER_HOME.

    The DAGSTER_HOME holds a copy of the project's dagster.yaml (so the run coordinator, the
    tag concurrency limit and the storage layout are the real ones); HALO_SYNC_STORAGE_DIR points
    into `workdir`. Yields once the GraphQL endpoint answers and the code location is LOADED
    (fails fast with the load error otherwise). Stops the whole process tree on exit.
    """
    own_tmp = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="halo-sync-dagster-")) if own_tmp else Path(workdir)
    try:
        dagster_home = workdir / "dagster_home"
        storage_dir = workdir / "storage"
        dagster_home.mkdir(parents=True, exist_ok=True)
        storage_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROJECT_DAGSTER_YAML, dagster_home / "dagster.yaml")
        port = free_port()
        env = dagster_env(os.environ, dagster_home, storage_dir, extra_env)
        log_path = workdir / "dagster-dev.log"
        cmd = [sys.executable, "-m", "dagster", "dev", "-w", str(WORKSPACE_YAML), "-h", "127.0.0.1", "-p", str(port)]
        with managed_process(cmd, env=env, cwd=REPO_ROOT, log_path=log_path, stop_timeout=stop_timeout) as proc:
            dev = DagsterDev("127.0.0.1", port, dagster_home, storage_dir, log_path, proc, secret_values(env))

            def ready() -> bool:
                if proc.poll() is not None:
                    raise _Fatal(f"dagster dev exited with code {proc.returncode}")
                name, status, error = dev.location_status()
                if error:
                    raise _Fatal(f"code location {name} failed to load: {redact(error, dev.secrets)}")
                return status == "LOADED"

            try:
                _wait_fatal(ready, timeout=startup_timeout, what="dagster dev GraphQL + code location LOADED")
            except (TimeoutError, _Fatal) as exc:
                raise RuntimeError(f"{exc}\n--- dagster dev log (tail) ---\n{dev.log_tail()}") from None
            yield dev
    finally:
        if own_tmp:
            shutil.rmtree(workdir, ignore_errors=True)


class _Fatal(Exception):
    """Stop polling at once."""


def _wait_fatal(predicate, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except _Fatal:
            raise
        except Exception as exc:  # noqa: BLE001 - not up yet
            last = exc
        time.sleep(0.5)
    raise TimeoutError(
        f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last error: {type(last).__name__})" if last else "")
    )


# ---------------------------------------------------------------------------------------------
# runs through GraphQL

TERMINAL_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}


def wait_for_run(dev: DagsterDev, run_id: str, *, timeout: float = 300.0) -> str:
    """Poll the run's status through the GraphQL client until it is terminal; returns the status name."""
    client = dev.client()
    seen: list[str] = []

    def finished() -> str | None:
        if dev.process.poll() is not None:
            raise _Fatal(f"dagster dev exited with code {dev.process.returncode} while run {run_id} was {seen[-1:]}")
        status = client.get_run_status(run_id).value
        if not seen or seen[-1] != status:
            seen.append(status)
        return status if status in TERMINAL_STATUSES else None

    try:
        _wait_fatal(finished, timeout=timeout, what=f"run {run_id} to finish")
    except (TimeoutError, _Fatal) as exc:
        raise AssertionError(
            f"{exc}; statuses seen: {seen}\n--- dagster dev log (tail) ---\n{dev.log_tail()}"
        ) from None
    return seen[-1]


RUN_EVENTS_QUERY = """
query RunEvents($runId: ID!, $cursor: String) {
  logsForRun(runId: $runId, afterCursor: $cursor, limit: 1000) {
    __typename
    ... on EventConnection {
      cursor
      hasMore
      events {
        __typename
        ... on MessageEvent { message level }
        ... on StepEvent { stepKey }
        ... on AssetCheckEvaluationEvent {
          evaluation { checkName assetKey { path } success severity description }
        }
        ... on MaterializationEvent { assetKey { path } }
        ... on ExecutionStepFailureEvent { error { message } }
      }
    }
    ... on PythonError { message }
    ... on RunNotFoundError { message }
  }
}
"""


def run_events(dev: DagsterDev, run_id: str) -> list[dict[str, Any]]:
    """Every event of a run, through GraphQL `logsForRun` (paged)."""
    events: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):  # bounded paging
        conn = dev.graphql(RUN_EVENTS_QUERY, {"runId": run_id, "cursor": cursor})["logsForRun"]
        if conn["__typename"] != "EventConnection":
            raise RuntimeError(f"logsForRun: {conn['__typename']}: {conn.get('message')}")
        events += conn["events"]
        cursor = conn["cursor"]
        if not conn["hasMore"]:
            break
    return events


JOB_CHECKS_QUERY = """
query JobChecks {
  assetNodes {
    assetKey { path }
    jobNames
    assetChecksOrError {
      __typename
      ... on AssetChecks { checks { name blocking jobNames assetKey { path } } }
    }
  }
}
"""


def checks_of_job(dev: DagsterDev, job_name: str) -> list[dict[str, Any]]:
    """The asset checks (name, asset, blocking) the webserver lists for `job_name`."""
    checks = []
    for node in dev.graphql(JOB_CHECKS_QUERY)["assetNodes"]:
        result = node["assetChecksOrError"]
        if result["__typename"] != "AssetChecks":
            raise RuntimeError(f"assetChecksOrError for {node['assetKey']}: {result['__typename']}")
        checks += [c for c in result["checks"] if job_name in c["jobNames"]]
    return checks
