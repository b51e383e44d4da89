"""TLS verification: the public trust store is built once per process and shared by every client."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from httpx._transports import default as httpx_transports

from halo_sync_pipeline.clients import connection
from halo_sync_pipeline.clients.connection import ssl_verify
from halo_sync_pipeline.defs.resources import HaloResource, M365Resource

PARTNER = "00000000-0000-4000-8000-000000000000"


def test_the_public_trust_store_is_built_once_and_verifies(monkeypatch: pytest.MonkeyPatch) -> None:
    connection._public_trust.cache_clear()
    built: list[Any] = []
    real = httpx.create_ssl_context
    monkeypatch.setattr(httpx, "create_ssl_context", lambda **kw: built.append(kw) or real(**kw))
    first, second = ssl_verify(True), ssl_verify(True)
    assert first is second and len(built) == 1
    assert isinstance(first, ssl.SSLContext)
    assert first.verify_mode == ssl.CERT_REQUIRED and first.check_hostname
    assert ssl_verify(False) is False


def test_a_ca_bundle_is_read_each_time_so_a_new_sandbox_ca_on_the_same_path_is_trusted(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(bundle))
    before = ssl_verify(str(bundle))
    trustme.CA().cert_pem.write_to_path(str(bundle))  # a sandbox restarted on the same state dir
    after = ssl_verify(str(bundle))
    assert isinstance(before, ssl.SSLContext) and isinstance(after, ssl.SSLContext)
    assert before is not after
    assert before.get_ca_certs() != after.get_ca_certs()


def test_clients_given_verify_true_never_build_their_own_trust_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx builds a trust store (25–55 ms of CPU here) for every client given verify=True; a run makes
    about 23 clients (one per Halo asset, per Graph tenant slot, for msal), so ours get the shared one."""
    given: list[Any] = []
    real = httpx_transports.create_ssl_context

    def recording(verify: Any = True, cert: Any = None, trust_env: bool = True) -> ssl.SSLContext:
        given.append(verify)
        return real(verify=verify, cert=cert, trust_env=trust_env)

    monkeypatch.setattr(httpx_transports, "create_ssl_context", recording)
    halo = HaloResource(url="https://halo.test", client_id="c", client_secret="halo-secret").client()
    graph = M365Resource(partner_tenant_id=PARTNER, client_id="c", client_secret="graph-secret").client()
    slots = [graph._new_http() for _ in range(3)]  # what load_all makes per tenant slot

    async def close() -> None:
        for slot in slots:
            await slot.aclose()
        await graph.aclose()

    halo.close()
    asyncio.run(close())
    assert len(given) >= 6  # Halo, msal, the partner reads and three slots
    assert all(isinstance(verify, ssl.SSLContext) for verify in given)
    assert len({id(verify) for verify in given}) == 1
