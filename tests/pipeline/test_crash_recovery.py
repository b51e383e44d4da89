"""Killing a live apply half-way and running it again ends where one clean run ends, with no duplicate."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import dagster as dg

from halo_sync_pipeline.sandbox.generator import generate_estate
from tests.pipeline.harness import LIVE, admin, run_job

REPO = Path(__file__).resolve().parents[2]
# One request per write, so that requests count writes and the kill lands between two of them.
ONE_WRITE_PER_REQUEST = {"HALO_WRITE_BATCH_SIZE": "1"}


def _contact_writes(sandbox) -> int:
    return sum(
        row["count"]
        for row in admin(sandbox, "stats")["requests"]
        if row["server"] == "halo" and row["method"] == "POST" and row["path"].lower() in ("/api/users", "/api/client")
    )


def _comparable(halo: dict, original: dict) -> tuple:
    """Halo state without the ids Halo gave what the sync added: new contacts and new tenant entries.
    The apply sends several writes at once, so the order they land in, and those ids, may differ."""
    original_ids = {user["id"] for user in original["users"]}
    original_entries = {entry["id"] for client in original["clients"] for entry in client.get("azure_tenants") or []}
    users = sorted(
        repr(sorted((k, v) for k, v in user.items() if k != "id" or user["id"] in original_ids))
        for user in halo["users"]
    )
    clients = sorted(
        repr(
            client | {"azure_tenants": [_without_new_id(entry, original_entries) for entry in client["azure_tenants"]]}
        )
        for client in halo["clients"]
    )
    return clients, sorted(map(repr, halo["sites"])), users


def _without_new_id(entry: dict, original_entries: set[int]) -> dict:
    return entry if entry["id"] in original_entries else {k: v for k, v in entry.items() if k != "id"}


def _apply_in_subprocess(sandbox, home: Path) -> subprocess.Popen:
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = (
        os.environ
        | sandbox.env
        | {
            "DAGSTER_HOME": str(home),
            "HALO_SYNC_STORAGE_DIR": str(home / "storage"),
        }
        | ONE_WRITE_PER_REQUEST
    )
    command = [sys.executable, "-m", "dagster", "job", "execute", "-m", "halo_sync_pipeline.definitions",
               "-j", "halo_sync_apply", "-c", str(REPO / "config" / "apply_live.yaml")]  # fmt: skip
    return subprocess.Popen(command, cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def test_rerun_after_a_kill_mid_apply_matches_one_clean_run(sandbox_factory, tmp_path, monkeypatch):
    estate = generate_estate(12, 8, seed=7)

    clean = sandbox_factory(estate)
    loaded = admin(clean, "estate")["halo"]  # with the ids the sandbox gave the estate's records
    with dg.instance_for_test(temp_dir=str(_mkdir(tmp_path / "clean"))) as instance:
        assert run_job(clean, instance, monkeypatch, run_config=LIVE, extra_env=ONE_WRITE_PER_REQUEST).success
    clean_writes = _contact_writes(clean)
    assert clean_writes > 10

    crashed = sandbox_factory(estate, latency_ms=60)
    process = _apply_in_subprocess(crashed, tmp_path / "home")
    try:
        deadline = time.monotonic() + 240
        while _contact_writes(crashed) < 3:
            assert process.poll() is None, "the apply finished or died before it could be killed"
            assert time.monotonic() < deadline, "the apply never started writing"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    partial = _contact_writes(crashed)
    assert 3 <= partial < clean_writes

    admin(crashed, "faults", {"latency_ms": 0})
    with dg.instance_for_test(temp_dir=str(_mkdir(tmp_path / "rerun"))) as instance:
        assert run_job(crashed, instance, monkeypatch, run_config=LIVE).success

    final = admin(crashed, "estate")["halo"]
    assert _comparable(final, loaded) == _comparable(admin(clean, "estate")["halo"], loaded)
    # No new pair of active contacts sharing an azureoid (the estate plants people in two companies on purpose).
    assert _shared_oids(final["users"]) <= _shared_oids(estate["halo"]["users"])


def _shared_oids(users: list[dict]) -> set[str]:
    linked = Counter(str(u["azureoid"]).lower() for u in users if u.get("azureoid") and not u.get("inactive"))
    return {oid for oid, n in linked.items() if n > 1}


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path
