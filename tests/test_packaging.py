"""What each install carries: `pip install .` (the code location) has no web server, certificate maker or
simulator; the extras bring what they promise; `halo-sync-sandbox` without the sandbox extra says how to get it.

The closures are walked through the installed distributions' metadata (no network); one test also asks pip
itself what `pip install .` would install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
SANDBOX_ONLY = {"starlette", "uvicorn", "trustme"}
INSTALL_HINT = "pip install 'halo-sync-pipeline[sandbox]'"


def _applies(requirement: Requirement, extras: Iterable[str]) -> bool:
    """Whether `requirement` (a distribution's metadata) holds when that distribution is installed with `extras`."""
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in (*extras, ""))


def closure(requirements: Iterable[str]) -> set[str]:
    """Canonical names of every distribution that `requirements` pull in, walking the installed metadata."""
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(text) for text in requirements]
    while todo:
        requirement = todo.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        # A dependency absent from this environment fails here, naming it: the lock installs every extra.
        todo += [dep for dep in map(Requirement, metadata.requires(key[0]) or []) if _applies(dep, key[1])]
    return {name for name, _ in seen}


def core() -> set[str]:
    return closure(PROJECT["dependencies"])


def with_extra(extra: str) -> set[str]:
    return closure([*PROJECT["dependencies"], *PROJECT["optional-dependencies"][extra]])


def locked_names() -> set[str]:
    lines = (REPO / "requirements.lock").read_text().splitlines()
    return {canonicalize_name(line.split("==")[0]) for line in lines if line and not line[0].isspace() and "==" in line}


def test_the_walk_follows_dependencies_and_extras() -> None:
    # dagster pulls sqlalchemy; uvicorn[standard] pulls uvloop and plain uvicorn does not.
    assert "sqlalchemy" in closure(["dagster"])
    assert "uvloop" in closure(["uvicorn[standard]"])
    assert "uvloop" not in closure(["uvicorn"])


def test_a_production_install_carries_no_web_server_certificate_maker_or_simulator() -> None:
    installed = core()
    assert {"dagster", "dagster-msteams", "httpx", "msal", "pandas", "pandera", "jsonschema"} <= installed
    assert installed & SANDBOX_ONLY == set()
    assert "dagster-webserver" not in installed


def test_the_sandbox_extra_brings_the_servers_and_the_certificate_maker() -> None:
    # uvicorn's standard set (uvloop, httptools) is what the sandbox has always been served with.
    assert SANDBOX_ONLY | {"uvloop", "httptools"} <= with_extra("sandbox")
    assert "dagster-webserver" not in with_extra("sandbox")


def test_the_ui_extra_brings_the_webserver() -> None:
    assert {"dagster-webserver", "dagster-graphql"} <= with_extra("ui")
    assert "trustme" not in with_extra("ui")


def test_the_dev_extra_brings_the_test_and_screenshot_tools() -> None:
    assert {"pytest", "pytest-timeout", "dagster-graphql", "dagster-postgres", "websockets"} <= with_extra("dev")


def test_the_lock_pins_every_distribution_of_every_extra() -> None:
    # make installs with `-c requirements.lock`: a distribution missing from the lock would float.
    extras = PROJECT["optional-dependencies"].values()
    everything = closure([*PROJECT["dependencies"], *(requirement for extra in extras for requirement in extra)])
    assert everything - locked_names() == set()


@pytest.mark.slow
def test_pip_itself_installs_no_sandbox_package_with_the_core(tmp_path: Path) -> None:
    """The real resolver on the package index, pinned by the lock as a production image is (about 15 s)."""
    report = tmp_path / "report.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            str(report),
            "-c",
            str(REPO / "requirements.lock"),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    would_install = {canonicalize_name(item["metadata"]["name"]) for item in json.loads(report.read_text())["install"]}
    assert would_install & SANDBOX_ONLY == set()
    assert would_install - {"halo-sync-pipeline"} == core()


def _without(tmp_path: Path, blocked: Iterable[str], command: list[str]) -> subprocess.CompletedProcess[str]:
    """Run `command` with the `blocked` modules unimportable, as if they were not installed."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text("import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in blocked))
    env = os.environ | {"PYTHONPATH": str(shim)}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def _sandbox_cli(tmp_path: Path, blocked: str, *args: str) -> subprocess.CompletedProcess[str]:
    return _without(tmp_path, [blocked], [str(Path(sys.executable).with_name("halo-sync-sandbox")), *args])


def test_the_code_location_loads_without_the_sandbox_and_ui_extras(tmp_path: Path) -> None:
    blocked = [*SANDBOX_ONLY, "dagster_webserver", "halo_sync_pipeline.sandbox", "halo_sync_pipeline.devenv"]
    # What `dagster code-server start -m halo_sync_pipeline.definitions` looks for: a Definitions at module level.
    load = (
        "import dagster as dg, halo_sync_pipeline.definitions as location\n"
        "print(sum(isinstance(value, dg.Definitions) for value in vars(location).values()))"
    )
    done = _without(tmp_path, blocked, [sys.executable, "-c", load])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"


@pytest.mark.parametrize("blocked", sorted(SANDBOX_ONLY))
def test_sandbox_command_without_the_extra_says_how_to_get_it(tmp_path: Path, blocked: str) -> None:
    done = _sandbox_cli(tmp_path, blocked, "serve", "--estate", "e.json", "--state-dir", "s", "--env-file", "s.env")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [done.stderr.strip()]  # one line, no traceback
    assert INSTALL_HINT in done.stderr and "Traceback" not in done.stderr


def test_sandbox_command_does_not_disguise_another_missing_module_as_the_extra(tmp_path: Path) -> None:
    done = _sandbox_cli(tmp_path, "halo_sync_pipeline.halo_api_schema", "export", "--state-dir", "s")
    assert done.returncode == 1
    assert "Traceback" in done.stderr and INSTALL_HINT not in done.stderr


def test_sandbox_command_with_the_extra_runs(tmp_path: Path) -> None:
    done = _sandbox_cli(tmp_path, "no_such_module_anyway", "generate", "--tenants", "1", "--users-per-tenant", "1")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["m365"]["tenants"]
