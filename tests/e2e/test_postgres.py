"""halo_sync_plan with PostgreSQL instance storage, on a real PostgreSQL server started for the test.

The server's binaries come from Debian's `postgresql` package; the test set-up installs it when it is
missing (as root, with apt-get) and skips with the reason only where that is impossible. The cluster
is a throw-away one in a temp folder owned by the `postgres` system user (PostgreSQL refuses to run
as root), listening on 127.0.0.1 on a free port with password (scram) authentication, and is
always stopped (`pg_ctl stop -m fast`, then SIGKILL of the postmaster if needed).

The Dagster instance uses config/dagster.postgres.yaml exactly as shipped, its `env:` settings
pointed at that server.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .helpers import REPO_ROOT, free_port, wait_until

pytestmark = pytest.mark.timeout(900)  # includes a possible apt-get install of postgresql

POSTGRES_YAML = REPO_ROOT / "config" / "dagster.postgres.yaml"
PLAN_ASSETS = {
    "halo_companies",
    "halo_contacts",
    "halo_sites",
    "halo_tenant_mappings",
    "m365_tenants",
    "m365_domains",
    "m365_users",
    "company_mappings",
    "contact_changes",
    "tenant_review",
    "inactive_report",
}


# ---------------------------------------------------------------------------------------------
# finding or installing PostgreSQL


def _pg_bin_dir() -> Path | None:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    return None


def _install_postgresql() -> str | None:
    """apt-get install Debian's postgresql; returns None on success, else why it could not be done."""
    if os.geteuid() != 0:
        return "PostgreSQL server binaries (initdb/pg_ctl) are missing and installing them needs root"
    if not shutil.which("apt-get"):
        return "PostgreSQL server binaries are missing and there is no apt-get to install Debian's postgresql"
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    # Keep the package's own default cluster from being started by the install (we start our own).
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = False
    if not policy.exists():
        with contextlib.suppress(OSError):
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
            made_policy = True
    try:
        for cmd in (
            ["apt-get", "update", "-q"],
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"],
        ):
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                return f"`{' '.join(cmd)}` failed ({done.returncode}): {done.stderr.strip()[-500:]}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"installing postgresql failed: {exc}"
    finally:
        if made_policy:
            policy.unlink(missing_ok=True)
    return None


def _ensure_pg_bin_dir() -> Path:
    bin_dir = _pg_bin_dir()
    if bin_dir is None:
        reason = _install_postgresql()
        if reason:
            pytest.skip(f"no PostgreSQL server available: {reason}")
        bin_dir = _pg_bin_dir()
        if bin_dir is None:
            pytest.skip("no PostgreSQL server available: postgresql installed but initdb not found")
    return bin_dir


# ---------------------------------------------------------------------------------------------
# a throw-away cluster


@dataclass
class PgServer:
    bin_dir: Path
    root: Path
    data_dir: Path
    socket_dir: Path
    port: int
    user: str
    password: str
    run_as: list[str]  # prefix that runs a command as the cluster's owner ([] when not root)
    log_path: Path

    def pg_ctl(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.run_as, str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def connect(self, db_name: str = "postgres"):
        import psycopg2

        return psycopg2.connect(
            host="127.0.0.1", port=self.port, user=self.user, password=self.password, dbname=db_name, connect_timeout=10
        )

    def postmaster_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        return None


def _owner_prefix() -> tuple[list[str], int | None, int | None]:
    """How to run the cluster's commands: as ourselves, or (as root) as the `postgres` system user."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root but there is no `postgres` system user to own the test cluster")
    runner = shutil.which("runuser")
    if not runner:
        pytest.skip("running as root and runuser is missing: cannot start PostgreSQL as the postgres user")
    return [runner, "-u", "postgres", "--"], entry.pw_uid, entry.pw_gid


@pytest.fixture
def pg_server() -> Iterator[PgServer]:
    bin_dir = _ensure_pg_bin_dir()
    run_as, uid, gid = _owner_prefix()
    # Not under pytest's tmp_path: its parents are root-only (0700), and the postgres user must reach it.
    root = Path(tempfile.mkdtemp(prefix="halo-sync-pg-"))
    if uid is not None:
        os.chown(root, uid, gid)
    server = PgServer(
        bin_dir=bin_dir,
        root=root,
        data_dir=root / "data",
        socket_dir=root / "sock",
        port=free_port(),
        user="halo_sync",
        password=secrets.token_urlsafe(18),
        run_as=run_as,
        log_path=root / "postgres.log",
    )
    started = False
    try:
        server.socket_dir.mkdir()
        pwfile = root / "pwfile"
        pwfile.write_text(server.password + "\n")
        pwfile.chmod(0o600)
        if uid is not None:
            for path in (server.socket_dir, pwfile):
                os.chown(path, uid, gid)
        init = subprocess.run(
            [
                *run_as,
                str(bin_dir / "initdb"),
                "-D",
                str(server.data_dir),
                "-U",
                server.user,
                f"--pwfile={pwfile}",
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
            capture_output=True,
            text=True,
            timeout=180,
            stdin=subprocess.DEVNULL,
        )
        pwfile.unlink()
        assert init.returncode == 0, f"initdb failed: {init.stderr[-2000:]}"
        options = (
            f"-c listen_addresses=127.0.0.1 -p {server.port} -k {server.socket_dir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        start = server.pg_ctl("-l", str(server.log_path), "-w", "-t", "60", "-o", options, "start")
        started = True
        log = server.log_path.read_text(errors="replace")[-2000:] if server.log_path.exists() else ""
        assert start.returncode == 0, f"pg_ctl start failed: {start.stderr[-1000:]}\n{log}"
        wait_until(lambda: server.connect().close() or True, timeout=30, what="PostgreSQL to accept connections")
        yield server
    finally:
        if started:
            stop = server.pg_ctl("-m", "fast", "-w", "-t", "30", "stop", timeout=60)
            pid = server.postmaster_pid()
            if stop.returncode != 0 and pid:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------------------------------


def test_plan_job_with_postgres_storage(pg_server: PgServer, sandbox_factory, small_estate, tmp_path, monkeypatch):
    import dagster as dg

    db_name = "halo_sync_dagster"
    conn = pg_server.connect()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db_name}")
    conn.close()

    sandbox = sandbox_factory(small_estate)
    dagster_home = tmp_path / "dagster_home"
    storage_dir = tmp_path / "storage"
    dagster_home.mkdir()
    storage_dir.mkdir()
    shutil.copy(POSTGRES_YAML, dagster_home / "dagster.yaml")  # the shipped file, unchanged
    for key, value in {
        **sandbox.env,
        "DAGSTER_HOME": str(dagster_home),
        "HALO_SYNC_STORAGE_DIR": str(storage_dir),
        "HALO_SYNC_PG_HOST": "127.0.0.1",
        "HALO_SYNC_PG_PORT": str(pg_server.port),
        "HALO_SYNC_PG_DB": db_name,
        "HALO_SYNC_PG_USER": pg_server.user,
        "HALO_SYNC_PG_PASSWORD": pg_server.password,
    }.items():
        monkeypatch.setenv(key, value)

    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    from halo_sync_pipeline.definitions import build_definitions

    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert not instance.telemetry_enabled
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
        assert {"key": "halo_sync/apply", "limit": 1} in limits, limits

        job = build_definitions().resolve_job_def("halo_sync_plan")
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        failures = [str(e.event_specific_data.error.message)[:800] for e in result.all_events if e.is_step_failure]
        assert result.success, f"halo_sync_plan failed: {failures}"
        run_id = result.run_id

    # Nothing went to SQLite: the storage folder only holds artifacts (IO manager values, logs).
    assert not list(storage_dir.rglob("*.db")), sorted(str(p) for p in storage_dir.rglob("*.db"))

    # The run, its materialisations and its check evaluations are rows in PostgreSQL.
    conn = pg_server.connect(db_name)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pipeline_name, status FROM runs WHERE run_id = %s", (run_id,))
            assert cur.fetchall() == [("halo_sync_plan", "SUCCESS")]
            cur.execute(
                "SELECT DISTINCT asset_key FROM event_logs WHERE run_id = %s AND dagster_event_type = %s",
                (run_id, "ASSET_MATERIALIZATION"),
            )
            materialised = {dg.AssetKey.from_db_string(row[0]).to_user_string() for row in cur.fetchall()}
            assert materialised == PLAN_ASSETS
            cur.execute(
                "SELECT count(*), count(*) FILTER (WHERE execution_status = 'SUCCEEDED') "
                "FROM asset_check_executions WHERE run_id = %s",
                (run_id,),
            )
            total, succeeded = cur.fetchone()
            assert total >= len(PLAN_ASSETS) and succeeded >= len(PLAN_ASSETS), (total, succeeded)
    finally:
        conn.close()

    # A fresh instance from the same dagster.yaml (as the webserver would be) sees the run.
    with dg.DagsterInstance.get() as reloaded:
        run = reloaded.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        latest = reloaded.get_latest_materialization_event(dg.AssetKey("company_mappings"))
        assert latest is not None and latest.run_id == run_id
