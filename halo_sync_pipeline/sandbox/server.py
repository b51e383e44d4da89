"""Running the sandbox: TLS material, both uvicorn servers on loopback, persisted state, the env file.

Both servers run on one asyncio event loop in a background thread, each on 127.0.0.1 with a port
the OS picks, over HTTPS with a certificate for 127.0.0.1/localhost signed by a CA made at start
(msal only accepts https authorities). The state dir holds:

    halo.sqlite3        Halo state (also the report SQL mirror)
    m365.json           the Microsoft 365 part of the estate being served
    initial_estate.json the estate the sandbox was started from (what /_sandbox/reset goes back to)
    credentials.json    the secrets handed out, kept across restarts so an env file stays valid
    ca.pem              the CA bundle clients must trust (HALO_SYNC_CA_BUNDLE)
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
import uvicorn

from halo_sync_pipeline import environment
from halo_sync_pipeline.sandbox.credentials import SandboxCredentials
from halo_sync_pipeline.sandbox.estate import EstateError, load_estate
from halo_sync_pipeline.sandbox.halo_app import SandboxControl, build_halo_app, parse_rate_limit
from halo_sync_pipeline.sandbox.halo_store import DB_FILE, HaloStore
from halo_sync_pipeline.sandbox.runtime import SandboxRuntime, SlidingWindowLimit

M365_FILE = "m365.json"
INITIAL_ESTATE_FILE = "initial_estate.json"
CREDENTIALS_FILE = "credentials.json"
CA_FILE = "ca.pem"
STARTUP_TIMEOUT_S = 30.0
SHUTDOWN_TIMEOUT_S = 10.0


class SandboxStateError(RuntimeError):
    """The state dir and the arguments do not fit together (e.g. an estate given for an existing sandbox)."""


@dataclass
class RunningSandbox:
    halo_url: str
    ms_url: str
    ca_bundle: Path
    state_dir: Path
    credentials: SandboxCredentials = field(repr=False)
    runtime: SandboxRuntime = field(repr=False)
    env: dict[str, str] = field(repr=False)
    _stop: Callable[[], None] = field(repr=False)

    def write_env_file(self, path: str | Path) -> Path:
        """Write `env` as a file for `set -a; . FILE` (owner-only: it holds secrets)."""
        path = Path(path)
        _write_private(path, "".join(f"{name}={shlex.quote(value)}\n" for name, value in self.env.items()))
        return path

    def stop(self) -> None:
        self._stop()

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def state_exists(state_dir: str | Path) -> bool:
    """Whether `state_dir` holds a sandbox that can be resumed without an estate."""
    return _State(Path(state_dir)).exists()


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


class _State:
    """The persisted state of one state dir, and resets of it."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir

    def exists(self) -> bool:
        return (self.dir / DB_FILE).exists() and (self.dir / M365_FILE).exists()

    def initial_estate(self) -> dict[str, Any]:
        path = self.dir / INITIAL_ESTATE_FILE
        if not path.exists():
            raise SandboxStateError(f"{self.dir} has no {INITIAL_ESTATE_FILE} to reset to; pass an estate")
        return load_estate(path)

    def m365(self) -> dict[str, Any]:
        m365: dict[str, Any] = json.loads((self.dir / M365_FILE).read_text())
        return m365

    def write_estate(self, estate: dict[str, Any], *, initial: bool) -> None:
        (self.dir / M365_FILE).write_text(json.dumps(estate["m365"], separators=(",", ":")))
        if initial:
            (self.dir / INITIAL_ESTATE_FILE).write_text(json.dumps(estate, separators=(",", ":")))

    def credentials(self, partner_tenant_id: str) -> SandboxCredentials:
        """The saved credentials if they are for this partner tenant, else new ones (saved)."""
        path = self.dir / CREDENTIALS_FILE
        if path.exists():
            saved = SandboxCredentials.from_json(path.read_text())
            if saved.partner_tenant_id == partner_tenant_id.lower():
                return saved
        fresh = SandboxCredentials.generate(partner_tenant_id)
        _write_private(path, fresh.to_json())
        return fresh

    def drop_halo_db(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            (self.dir / (DB_FILE + suffix)).unlink(missing_ok=True)


def _initial_state(state: _State, estate: str | Path | dict[str, Any] | None, reset: bool) -> dict[str, Any] | None:
    """The estate to load from scratch, or None to resume the state dir as it is."""
    if state.exists() and estate is not None and not reset:
        raise SandboxStateError(
            f"{state.dir} already holds a sandbox; pass --reset to start again from the estate, "
            "or omit --estate to resume it"
        )
    if estate is not None:
        return load_estate(estate)
    if not state.exists():
        raise SandboxStateError(f"{state.dir} holds no sandbox to resume; pass --estate FILE to start one")
    return state.initial_estate() if reset else None


def _tls_files(state_dir: Path) -> tuple[Path, Path, Path]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_path, cert_path, key_path = state_dir / CA_FILE, state_dir / "tls-cert.pem", state_dir / "tls-key.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    cert_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    _write_private(key_path, cert.private_key_pem.bytes().decode())
    return ca_path, cert_path, key_path


def _loopback_socket() -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when the listening
    # socket says it is TCP. Without it, Nagle holds back uvicorn's second TLS record of every answer
    # until the client's delayed ACK, ~40 ms per request.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class _ServerThread:
    """Two uvicorn servers on one event loop in a daemon thread."""

    def __init__(self, apps: list[Any], cert: Path, key: Path) -> None:
        self.sockets = [_loopback_socket() for _ in apps]
        self.servers = [
            uvicorn.Server(
                uvicorn.Config(
                    app,
                    ssl_certfile=str(cert),
                    ssl_keyfile=str(key),
                    log_level="warning",
                    lifespan="off",
                    access_log=False,
                    timeout_graceful_shutdown=1,
                )
            )
            for app in apps
        ]
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="halo-sync-sandbox", daemon=True)

    @property
    def ports(self) -> list[int]:
        return [s.getsockname()[1] for s in self.sockets]

    def _run(self) -> None:
        async def serve_all() -> None:
            await asyncio.gather(
                *(srv.serve(sockets=[sock]) for srv, sock in zip(self.servers, self.sockets, strict=True))
            )

        try:
            asyncio.run(serve_all())
        except BaseException as exc:  # reported by start() / stop(), the thread must not die silently
            self.error = exc

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not all(srv.started for srv in self.servers) and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not all(srv.started for srv in self.servers):
            self.stop()
            raise RuntimeError(f"sandbox servers failed to start: {self.error!r}")

    def stop(self) -> None:
        for srv in self.servers:
            srv.should_exit = True
        self.thread.join(SHUTDOWN_TIMEOUT_S)
        for sock in self.sockets:
            sock.close()


@contextmanager
def _as_estate_error() -> Iterator[None]:
    """The Microsoft model's own checks (e.g. an unknown name in sandbox_omit_user_properties) refuse an estate
    like the schema does: as an EstateError naming the record, which the CLI and the reset API report."""
    try:
        yield
    except EstateError:
        raise
    except ValueError as exc:
        raise EstateError([str(exc)]) from None


def start_sandbox(
    state_dir: str | Path,
    estate: str | Path | dict[str, Any] | None = None,
    *,
    reset: bool = False,
    latency_ms: float = 0,
    jitter_ms: float = 0,
    halo_rate_limit: tuple[int, float] | str | None = (300, 300),
    graph_rate: float = 50.0,
    graph_burst: int = 100,
    token_lifetime_s: float = 3600,
    faults: dict[str, Any] | None = None,
) -> RunningSandbox:
    """Start both servers on a state dir: from `estate` (a path or dict) or resuming the saved state.

    Raises EstateError for a malformed estate and SandboxStateError when the arguments do not fit the
    state dir (estate given for an existing sandbox without reset; nothing to resume).
    """
    from halo_sync_pipeline.sandbox.ms_app import build_ms_app  # the MS side is heavy; load it only to serve

    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    state = _State(state_dir)
    fresh = _initial_state(state, estate, reset)
    m365 = fresh["m365"] if fresh is not None else state.m365()
    credentials = state.credentials(m365["partner_tenant_id"])

    limit = parse_rate_limit(halo_rate_limit)
    runtime = SandboxRuntime(
        token_lifetime_s=token_lifetime_s,
        halo_rate_limit=None if limit is None else SlidingWindowLimit(*limit),
        graph_rate=graph_rate,
        graph_burst=graph_burst,
    )
    runtime.faults.update({"latency_ms": latency_ms, "jitter_ms": jitter_ms} | (faults or {}))

    # Before the Halo state is touched: the Microsoft model's own checks may still refuse the estate.
    with _as_estate_error():
        ms_app = build_ms_app(m365, runtime, credentials)
    if fresh is not None:
        state.drop_halo_db()
    store = HaloStore(state_dir)
    if fresh is not None:
        store.load(fresh["halo"])
        state.write_estate(fresh, initial=True)

    def reset_to(new_estate: dict[str, Any] | None) -> None:
        target = state.initial_estate() if new_estate is None else load_estate(new_estate)
        if target["m365"]["partner_tenant_id"].lower() != credentials.partner_tenant_id:
            raise EstateError(["m365.partner_tenant_id: a reset cannot change the partner tenant; restart instead"])
        with _as_estate_error():
            ms_app.state.load_m365(target["m365"])
        store.load(target["halo"])
        state.write_estate(target, initial=new_estate is not None)
        runtime.stats.reset()

    control = SandboxControl(current_m365=lambda: ms_app.state.export_m365(), reset=reset_to)
    ca_path, cert_path, key_path = _tls_files(state_dir)
    servers = _ServerThread([build_halo_app(store, runtime, credentials, control), ms_app], cert_path, key_path)
    try:
        servers.start()
    except BaseException:
        store.close()
        raise
    halo_port, ms_port = servers.ports
    halo_url, ms_url = f"https://127.0.0.1:{halo_port}", f"https://127.0.0.1:{ms_port}"

    stopped = threading.Lock()

    def stop() -> None:
        if stopped.acquire(blocking=False):
            servers.stop()
            store.close()

    return RunningSandbox(
        halo_url=halo_url,
        ms_url=ms_url,
        ca_bundle=ca_path,
        credentials=credentials,
        runtime=runtime,
        state_dir=state_dir,
        env=sandbox_env(halo_url, ms_url, ca_path, credentials),
        _stop=stop,
    )


def sandbox_env(halo_url: str, ms_url: str, ca_path: Path, credentials: SandboxCredentials) -> dict[str, str]:
    """The variables the pipeline reads in a real deployment, pointing at the sandbox."""
    return {
        environment.HALO_URL: halo_url,
        environment.HALO_CLIENT_ID: credentials.halo_client_id,
        environment.HALO_CLIENT_SECRET: credentials.halo_client_secret,
        environment.HALO_TENANT: credentials.halo_tenant,
        environment.M365_LOGIN_URL: ms_url,
        environment.M365_GRAPH_URL: ms_url,
        environment.M365_PARTNER_TENANT_ID: credentials.partner_tenant_id,
        environment.M365_CLIENT_ID: credentials.m365_client_id,
        environment.M365_CLIENT_SECRET: credentials.m365_client_secret,
        environment.M365_REFRESH_TOKEN: credentials.m365_refresh_token,
        environment.CA_BUNDLE: str(ca_path.resolve()),
    }


def export_state_dir(state_dir: str | Path) -> dict[str, Any]:
    """The current estate of a (stopped) state dir."""
    state = _State(Path(state_dir))
    if not state.exists():
        raise SandboxStateError(f"{state_dir} holds no sandbox state")
    store = HaloStore(Path(state_dir))
    try:
        return {"halo": store.export(), "m365": state.m365()}
    finally:
        store.close()
