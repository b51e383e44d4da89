"""Fixtures shared by the sandbox's Halo tests: clients for the module's `sandbox` fixture, anonymous and
authorised, and the token request they use."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from halo_sync_pipeline.sandbox.server import RunningSandbox


def token_response(sandbox: RunningSandbox, http: httpx.Client, secret: str | None = None) -> httpx.Response:
    creds = sandbox.credentials
    return http.post(
        "/auth/token",
        params={"tenant": creds.halo_tenant},
        data={
            "grant_type": "client_credentials",
            "client_id": creds.halo_client_id,
            "client_secret": creds.halo_client_secret if secret is None else secret,
            "scope": "all",
        },
    )


@pytest.fixture
def anonymous(sandbox: RunningSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.halo_url, verify=str(sandbox.ca_bundle), timeout=10) as http:
        yield http


@pytest.fixture
def halo(sandbox: RunningSandbox, anonymous: httpx.Client) -> Iterator[httpx.Client]:
    token = token_response(sandbox, anonymous).json()["access_token"]
    with httpx.Client(
        base_url=sandbox.halo_url,
        verify=str(sandbox.ca_bundle),
        timeout=10,
        headers={"Authorization": f"Bearer {token}"},
    ) as http:
        yield http
