"""Starting, stopping and resuming the sandbox; the env file; the CLI as a real process; the issue's flow."""

from __future__ import annotations

import copy
import inspect
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from halo_sync_pipeline.sandbox import EXAMPLE_ESTATE
from halo_sync_pipeline.sandbox import cli as sandbox_cli
from halo_sync_pipeline.sandbox.estate import EstateError
from halo_sync_pipeline.sandbox.server import RunningSandbox, SandboxStateError, start_sandbox

ENV_NAMES = [
    "HALO_URL",
    "HALO_CLIENT_ID",
    "HALO_CLIENT_SECRET",
    "HALO_TENANT",
    "M365_LOGIN_URL",
    "M365_GRAPH_URL",
    "M365_PARTNER_TENANT_ID",
    "M365_CLIENT_ID",
    "M365_CLIENT_SECRET",
    "M365_REFRESH_TOKEN",
    "HALO_SYNC_CA_BUNDLE",
]


def _halo_token(env: dict[str, str], http: httpx.Client) -> str:
    answer = http.post(
        f"{env['HALO_URL']}/auth/token",
        params={"tenant": env["HALO_TENANT"]},
        data={
            "grant_type": "client_credentials",
            "client_id": env["HALO_CLIENT_ID"],
            "client_secret": env["HALO_CLIENT_SECRET"],
            "scope": "all",
        },
    )
    answer.raise_for_status()
    return answer.json()["access_token"]


def _read_env_file(path: Path) -> dict[str, str]:
    # Sourcing it with a real shell is what users do; that is what this checks.
    out = subprocess.run(["bash", "-c", f"set -a; . {path}; env -0"], capture_output=True, check=True).stdout
    pairs = (item.split("=", 1) for item in out.decode().split("\0") if "=" in item)
    return {k: v for k, v in pairs if k in ENV_NAMES}


def test_env_holds_exactly_the_pipeline_variables(
    sandbox_factory: Callable[..., RunningSandbox], small_estate: dict[str, Any], tmp_path: Path
) -> None:
    sandbox = sandbox_factory(small_estate)
    assert list(sandbox.env) == ENV_NAMES
    assert sandbox.env["M365_LOGIN_URL"] == sandbox.env["M365_GRAPH_URL"] == sandbox.ms_url
    assert sandbox.halo_url.startswith("https://127.0.0.1:") and sandbox.ms_url.startswith("https://127.0.0.1:")
    path = sandbox.write_env_file(tmp_path / "out.env")
    assert _read_env_file(path) == sandbox.env
    assert path.stat().st_mode & 0o077 == 0
    shown = repr(sandbox)
    for secret in (
        sandbox.credentials.halo_client_secret,
        sandbox.credentials.m365_client_secret,
        sandbox.credentials.m365_refresh_token,
    ):
        assert secret not in shown and secret not in repr(sandbox.credentials)


def test_both_servers_answer_over_https_with_the_ca(
    sandbox_factory: Callable[..., RunningSandbox], small_estate: dict[str, Any]
) -> None:
    sandbox = sandbox_factory(small_estate)
    partner = sandbox.credentials.partner_tenant_id
    with httpx.Client(verify=str(sandbox.ca_bundle)) as http:
        assert http.get(f"{sandbox.halo_url}/api/authinfo").status_code == 200
        assert http.get(f"{sandbox.ms_url}/{partner}/v2.0/.well-known/openid-configuration").status_code == 200
    with pytest.raises(httpx.ConnectError), httpx.Client() as untrusting:
        untrusting.get(f"{sandbox.halo_url}/api/authinfo")


def test_stop_frees_the_ports(small_estate: dict[str, Any], tmp_path: Path) -> None:
    sandbox = start_sandbox(tmp_path, small_estate)
    sandbox.stop()
    sandbox.stop()  # idempotent
    with pytest.raises(httpx.ConnectError), httpx.Client(verify=str(sandbox.ca_bundle)) as http:
        http.get(f"{sandbox.halo_url}/api/authinfo")


def test_state_persists_across_restart(small_estate: dict[str, Any], tmp_path: Path) -> None:
    with start_sandbox(tmp_path, small_estate) as first, httpx.Client(verify=str(first.ca_bundle)) as http:
        token = _halo_token(first.env, http)
        http.post(
            f"{first.halo_url}/api/Users",
            headers={"Authorization": f"Bearer {token}"},
            json=[{"site_id": 10, "name": "Written Before Stop", "customfields": [{"name": "CFNew", "value": "x"}]}],
        ).raise_for_status()
        before = http.get(f"{first.halo_url}/_sandbox/estate").json()
    with start_sandbox(tmp_path) as resumed, httpx.Client(verify=str(resumed.ca_bundle)) as http:
        assert http.get(f"{resumed.halo_url}/_sandbox/estate").json() == before
        assert resumed.credentials == first.credentials
        _halo_token(resumed.env, http)  # the old env's secrets still work


def test_reset_restarts_from_the_estate(small_estate: dict[str, Any], tmp_path: Path) -> None:
    with start_sandbox(tmp_path, small_estate) as first, httpx.Client(verify=str(first.ca_bundle)) as http:
        start = http.get(f"{first.halo_url}/_sandbox/estate").json()
        token = _halo_token(first.env, http)
        http.post(
            f"{first.halo_url}/api/Users",
            headers={"Authorization": f"Bearer {token}"},
            json=[{"id": 100, "name": "Changed"}],
        ).raise_for_status()
    for estate in (small_estate, None):  # --reset with the estate, and --reset alone (the saved start estate)
        with start_sandbox(tmp_path, estate, reset=True) as again, httpx.Client(verify=str(again.ca_bundle)) as http:
            assert http.get(f"{again.halo_url}/_sandbox/estate").json() == start


def test_arguments_that_do_not_fit_the_state_dir(small_estate: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(SandboxStateError, match="holds no sandbox to resume; pass --estate"):
        start_sandbox(tmp_path / "empty")
    start_sandbox(tmp_path / "used", small_estate).stop()
    with pytest.raises(SandboxStateError, match="pass --reset to start again from the estate, or omit --estate"):
        start_sandbox(tmp_path / "used", small_estate)


def test_malformed_estate_is_refused_before_anything_is_written(small_estate: dict[str, Any], tmp_path: Path) -> None:
    small_estate["halo"]["sites"][0]["client_id"] = 42
    with pytest.raises(EstateError, match=r"halo.sites\[0\] \(id 10\): client_id 42 does not exist"):
        start_sandbox(tmp_path, small_estate)
    assert not (tmp_path / "halo.sqlite3").exists()


def test_start_options_reach_the_runtime(
    sandbox_factory: Callable[..., RunningSandbox], small_estate: dict[str, Any]
) -> None:
    sandbox = sandbox_factory(
        small_estate,
        latency_ms=1,
        jitter_ms=2,
        halo_rate_limit=None,
        graph_rate=5,
        graph_burst=6,
        token_lifetime_s=7,
        faults={"fail_nth_write": 3},
    )
    runtime = sandbox.runtime
    assert (runtime.faults.latency_ms, runtime.faults.jitter_ms, runtime.faults.fail_nth_write) == (1, 2, 3)
    assert (runtime.halo_rate_limit, runtime.graph_rate, runtime.graph_burst, runtime.token_lifetime_s) == (
        None,
        5,
        6,
        7,
    )


# ----------------------------------------------------------------------------- the CLI as a process


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "halo_sync_pipeline.sandbox.cli", *args]


def _wait_for_line(process: subprocess.Popen[str], text: str, timeout_s: float = 30) -> list[str]:
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if text in line:
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    if not found.wait(timeout_s):
        process.kill()
        raise AssertionError(f"no {text!r} from the sandbox; output so far: {lines}")
    return lines


def test_cli_serve_writes_env_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    env_file = tmp_path / "out.env"
    process = subprocess.Popen(
        _cli(
            "serve",
            "--estate",
            str(EXAMPLE_ESTATE),
            "--state-dir",
            str(tmp_path / "state"),
            "--env-file",
            str(env_file),
            "--fault-rate",
            "0",
            "--halo-rate-limit",
            "off",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        output = "".join(_wait_for_line(process, "sandbox ready"))
        env = _read_env_file(env_file)
        assert sorted(env) == sorted(ENV_NAMES)
        for name in ("HALO_CLIENT_SECRET", "M365_CLIENT_SECRET", "M365_REFRESH_TOKEN"):
            assert env[name] not in output
        assert env["HALO_URL"] in output and str(env_file.resolve()) in output
        with httpx.Client(verify=env["HALO_SYNC_CA_BUNDLE"]) as http:
            _halo_token(env, http)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    export = subprocess.run(
        _cli("export", "--state-dir", str(tmp_path / "state")), capture_output=True, text=True, check=True
    )
    example = json.loads(EXAMPLE_ESTATE.read_text())
    assert len(json.loads(export.stdout)["halo"]["users"]) == len(example["halo"]["users"])


def test_cli_passes_only_the_behaviour_options_given_under_start_sandboxs_names() -> None:
    """Omitted options stay out, so start_sandbox's defaults are the one source of the sandbox's behaviour."""
    serve = ["serve", "--state-dir", "s", "--env-file", "e.env"]
    given = ["--latency-ms", "30", "--halo-rate-limit", "off", "--token-lifetime", "5", "--graph-burst", "7"]
    assert sandbox_cli._behaviour(sandbox_cli._parser().parse_args(serve)) == {}
    assert sandbox_cli._behaviour(sandbox_cli._parser().parse_args(serve + given)) == {
        "latency_ms": 30.0,
        "halo_rate_limit": None,
        "token_lifetime_s": 5.0,
        "graph_burst": 7,
    }
    assert set(inspect.signature(start_sandbox).parameters) >= sandbox_cli.BEHAVIOUR_OPTIONS


def test_cli_refuses_a_malformed_estate_naming_the_record(small_estate: dict[str, Any], tmp_path: Path) -> None:
    small_estate["halo"]["users"][2]["site_id"] = 77
    estate_file = tmp_path / "bad.json"
    estate_file.write_text(json.dumps(small_estate))
    done = subprocess.run(
        _cli(
            "serve",
            "--estate",
            str(estate_file),
            "--state-dir",
            str(tmp_path / "s"),
            "--env-file",
            str(tmp_path / "o.env"),
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "halo.users[2] (id 102): site_id 77 does not exist" in done.stderr
    assert not (tmp_path / "o.env").exists()


# ----------------------------------------------------------------------------- the "Done when" flow


def test_done_when_flow_with_plain_httpx(tmp_path: Path) -> None:
    """Tokens from both sides, Halo users via REST and a saved report, Graph paging with $top=2,
    429s on both sides (Retry-After on Graph), a POSTed array visible in /_sandbox/estate."""
    estate = json.loads(EXAMPLE_ESTATE.read_text())
    with start_sandbox(tmp_path, estate, graph_rate=0.01, graph_burst=3, halo_rate_limit=(40, 300)) as sandbox:
        env = sandbox.env
        with httpx.Client(verify=env["HALO_SYNC_CA_BUNDLE"], timeout=10) as http:
            halo = {"Authorization": f"Bearer {_halo_token(env, http)}"}
            users = []
            for page in range(1, 100):
                body = http.get(
                    f"{env['HALO_URL']}/api/Users",
                    headers=halo,
                    params={"pageinate": "true", "page_size": 25, "page_no": page, "includeinactive": "true"},
                ).json()
                users += body["users"]
                if len(users) >= body["record_count"]:
                    break
            assert len(users) == len(estate["halo"]["users"])
            report = http.post(
                f"{env['HALO_URL']}/api/Report",
                headers=halo,
                json=[{"name": "users", "sql": "SELECT uid AS id FROM USERS"}],
            ).json()
            rows = http.get(
                f"{env['HALO_URL']}/api/Report/{report['id']}", headers=halo, params={"loadreport": "true"}
            ).json()["report"]["rows"]
            assert sorted(r["id"] for r in rows) == sorted(u["id"] for u in users)

            tenant = next(t for t in estate["m365"]["tenants"] if t.get("consented", True) and len(t["users"]) > 2)
            graph_token = http.post(
                f"{env['M365_LOGIN_URL']}/{tenant['customerId']}/oauth2/v2.0/token",
                data={
                    "grant_type": "refresh_token",
                    "client_id": env["M365_CLIENT_ID"],
                    "client_secret": env["M365_CLIENT_SECRET"],
                    "refresh_token": env["M365_REFRESH_TOKEN"],
                    "scope": "https://graph.microsoft.com/.default",
                },
            ).json()["access_token"]
            graph = {"Authorization": f"Bearer {graph_token}"}
            first = http.get(f"{env['M365_GRAPH_URL']}/v1.0/users", headers=graph, params={"$top": 2}).json()
            assert len(first["value"]) == 2 and "@odata.nextLink" in first
            second = http.get(first["@odata.nextLink"], headers=graph).json()
            assert second["value"] and second["value"][0]["id"] not in {u["id"] for u in first["value"]}
            throttled = [http.get(f"{env['M365_GRAPH_URL']}/v1.0/users", headers=graph) for _ in range(3)]
            assert throttled[-1].status_code == 429 and int(throttled[-1].headers["retry-after"]) > 0

            halo_statuses = [http.get(f"{env['HALO_URL']}/api/Client", headers=halo).status_code for _ in range(40)]
            assert 429 in halo_statuses

            posted = copy.deepcopy(users[0])
            http.post(f"{env['HALO_URL']}/_sandbox/faults", json={"halo_rate_limit": "off"}).raise_for_status()
            created = http.post(
                f"{env['HALO_URL']}/api/Users",
                headers=halo,
                json=[
                    {"site_id": posted["site_id"], "name": "Flow One", "emailaddress": "flow1@example.com"},
                    {"site_id": posted["site_id"], "name": "Flow Two", "emailaddress": "flow2@example.com"},
                ],
            ).json()
            estate_now = http.get(f"{env['HALO_URL']}/_sandbox/estate").json()
            assert {u["id"] for u in created} <= {u["id"] for u in estate_now["halo"]["users"]}


# ----------------------------------------------------------------------------- the sockets


def _server_side_socket(client: socket.socket) -> socket.socket:
    """A duplicate of the server's accepted socket for `client`'s connection (the sandbox runs in this process).

    Linux only: found among this process's open file descriptors by its local and peer address.
    """
    wanted = (client.getpeername(), client.getsockname())
    for name in os.listdir("/proc/self/fd"):
        try:
            candidate = socket.socket(fileno=os.dup(int(name)))
        except OSError:  # not a socket (or closed meanwhile)
            continue
        try:
            if candidate.family == socket.AF_INET and (candidate.getsockname(), candidate.getpeername()) == wanted:
                return candidate
        except OSError:  # a listening or unconnected socket has no peer
            pass
        candidate.close()
    raise AssertionError(f"no accepted socket for {wanted} in this process")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the server's socket through /proc")
def test_every_accepted_connection_has_tcp_nodelay(
    sandbox_factory: Callable[..., RunningSandbox], small_estate: dict[str, Any]
) -> None:
    """Without TCP_NODELAY, Nagle plus the client's delayed ACK hold back uvicorn's second TLS record ~40 ms."""
    sandbox = sandbox_factory(small_estate)
    context = ssl.create_default_context(cafile=str(sandbox.ca_bundle))
    partner = sandbox.credentials.partner_tenant_id
    for url, path in (
        (sandbox.halo_url, "/api/authinfo"),
        (sandbox.ms_url, f"/{partner}/v2.0/.well-known/openid-configuration"),
    ):
        port = httpx.URL(url).port
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            assert tls.recv(64).startswith(b"HTTP/1.1 200"), url  # served, so accepted and set up
            with _server_side_socket(tls) as accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0, url
