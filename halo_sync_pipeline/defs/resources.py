"""Dagster resources: the two API connections and the sync settings, declared once.

Secrets come only through `EnvVar`, which Dagster resolves at run time and never shows in the UI.
Base URLs and the CA bundle are plain environment values so that the sandbox's env file
(`set -a; . .sandbox/.../sandbox.env`) is all it takes to point the pipeline at the sandbox.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypedDict

import dagster as dg
from pydantic import Field, PrivateAttr

from halo_sync_pipeline import environment
from halo_sync_pipeline.clients.auth import HaloSession
from halo_sync_pipeline.clients.graph import GraphClient
from halo_sync_pipeline.clients.halo import HaloClient
from halo_sync_pipeline.clients.retry import RetryPolicy
from halo_sync_pipeline.settings import SyncSettings

MICROSOFT_LOGIN_URL = "https://login.microsoftonline.com"
MICROSOFT_GRAPH_URL = "https://graph.microsoft.com"


def _tenant_source(value: str) -> Literal["contracts", "gdap"]:
    if value not in ("contracts", "gdap"):
        raise ValueError(f"M365_TENANT_SOURCE must be contracts or gdap, got {value!r}")
    return "gdap" if value == "gdap" else "contracts"


def _ca_bundle(env: Mapping[str, str]) -> str | None:
    # The sandbox's CA; unset in real use, where the system trust store applies.
    return env.get(environment.CA_BUNDLE) or None


_RETRY_DEADLINE = "Seconds one call may take over all its retries."


def _at_once(default: int, most: int, description: str) -> Any:
    """A field bounding how many requests run at once: 1 to `most`."""
    return Field(default=default, ge=1, le=most, description=description)


class _ConnectionOptions(TypedDict):
    """The client keyword arguments both API resources fill the same way."""

    client_id: str
    client_secret: str
    verify: str | bool
    timeout: float
    retry_policy: RetryPolicy


class _ApiConnection(dg.ConfigurableResource):
    """What both API resources declare alike: the app registration's credentials and how to reach its API."""

    client_id: str = Field(description="Client (application) id of the API application.")
    client_secret: str = Field(description="Client secret of the API application (set through an EnvVar).")
    ca_bundle: str | None = Field(default=None, description="CA bundle path (the sandbox's); None = system trust.")
    timeout_s: float = Field(default=30.0, gt=0, description="Seconds one request may take.")
    retry_deadline_s: float = Field(gt=0, description=_RETRY_DEADLINE)

    def _connection_options(self) -> _ConnectionOptions:
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "verify": self.ca_bundle or True,
            "timeout": self.timeout_s,
            "retry_policy": RetryPolicy(deadline_s=self.retry_deadline_s),
        }


class HaloResource(_ApiConnection):
    """A Halo PSA API application (client credentials) with read access to reports and write access to clients/users."""

    url: str = Field(description="Halo base URL, e.g. https://yourcompany.halopsa.com")
    tenant: str = Field(default="", description="Halo tenant name (hosted Halo); empty for self-hosted.")
    use_reports: bool = Field(
        default=True, description="Read through saved SQL reports (few requests); False = REST paging."
    )
    page_size: int = Field(default=500, ge=1, le=5000)
    write_batch_size: int = Field(default=100, ge=1, le=1000)
    # Halo limits requests per 5 minutes, not how many run at once; at 100 ms per request, 300 write-backs
    # reading their companies one by one would take 30 s. A write larger than that limit is bound by it either way.
    max_connections: int = _at_once(
        4, 16, "Connections to Halo: the apply's reads and write batches go this many at a time."
    )
    retry_deadline_s: float = Field(default=120.0, gt=0, description=_RETRY_DEADLINE)
    # One token for every client of a run (one per asset), not one each: Halo limits requests.
    _session: HaloSession = PrivateAttr(default_factory=HaloSession)

    def client(self) -> HaloClient:
        return HaloClient(
            self.url,
            tenant=self.tenant,
            **self._connection_options(),
            reports_mode=self.use_reports,
            page_size=self.page_size,
            write_batch_size=self.write_batch_size,
            max_connections=self.max_connections,
            session=self._session,
        )


class M365Resource(_ApiConnection):
    """The partner's Microsoft Entra app, reading customer tenants through Microsoft Graph."""

    login_url: str = MICROSOFT_LOGIN_URL
    graph_url: str = MICROSOFT_GRAPH_URL
    partner_tenant_id: str
    refresh_token: str | None = Field(
        default=None, description="Secure Application Model refresh token; None = app-only tokens per customer tenant."
    )
    tenant_source: Literal["contracts", "gdap"] = "contracts"
    # Graph throttles per tenant, not per partner. A tenant costs 4 requests in 3 round trips, so 16 at a time
    # read 500 tenants at 100 ms per request in 500 / 16 × 0.3 s plus the client's CPU: 11.3 s measured.
    concurrency: int = _at_once(
        16, 64, "Customer tenants read at the same time (Graph throttles per tenant, not per partner)."
    )
    retry_deadline_s: float = Field(default=180.0, gt=0, description=_RETRY_DEADLINE)

    def client(self) -> GraphClient:
        return GraphClient(
            self.login_url,
            self.graph_url,
            self.partner_tenant_id,
            **self._connection_options(),
            refresh_token=self.refresh_token or None,
            app_only=not self.refresh_token,
            tenant_source=self.tenant_source,
            concurrency=self.concurrency,
        )


class SyncSettingsResource(dg.ConfigurableResource, SyncSettings):
    """What the plan does: the seed script's switches, with its defaults (README, "Settings").

    Its fields, defaults, descriptions and checks are `SyncSettings`'s (one definition). Deployments set
    them in a settings file (`HALO_SYNC_SETTINGS_FILE`), which every run uses, the schedules' included; a
    launch may still override them under `resources.sync_settings.config`."""

    def settings(self) -> SyncSettings:
        return SyncSettings(**self.model_dump())


SETTINGS_FILE_ENV = environment.SETTINGS_FILE


class SettingsFileError(ValueError):
    """The deployment's settings file cannot be used; the message names the file and the key."""


def settings_from_file(path: str | os.PathLike[str]) -> SyncSettingsResource:
    """The sync settings of a YAML (or JSON) file of `sync_settings` keys, checked like run config."""
    import yaml  # a dependency of dagster; imported here so that loading the definitions stays cheap

    try:
        values = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SettingsFileError(f"{SETTINGS_FILE_ENV}={path}: cannot read it: {exc}") from None
    if not isinstance(values, dict):
        raise SettingsFileError(f"{SETTINGS_FILE_ENV}={path}: expected a mapping of sync_settings keys")
    unknown = sorted(set(values) - set(SyncSettingsResource.model_fields))
    if unknown:
        raise SettingsFileError(f"{SETTINGS_FILE_ENV}={path}: unknown setting(s) {unknown}")
    try:
        resource = SyncSettingsResource(**values)
        resource.settings()
    except (ValueError, TypeError) as exc:
        raise SettingsFileError(f"{SETTINGS_FILE_ENV}={path}: {exc}") from None
    return resource


def production_resources(env: Mapping[str, str] | None = None) -> dict[str, dg.ConfigurableResource]:
    """Resources read from the environment of a real deployment (or of the sandbox's env file); `env`
    defaults to the process environment."""
    env = os.environ if env is None else env
    return {
        "halo": HaloResource(
            url=dg.EnvVar(environment.HALO_URL),
            client_id=dg.EnvVar(environment.HALO_CLIENT_ID),
            client_secret=dg.EnvVar(environment.HALO_CLIENT_SECRET),
            tenant=env.get(environment.HALO_TENANT, ""),
            ca_bundle=_ca_bundle(env),
            use_reports=env.get(environment.HALO_USE_REPORTS, "true").lower() != "false",
            **(
                {"write_batch_size": int(env[environment.HALO_WRITE_BATCH_SIZE])}
                if env.get(environment.HALO_WRITE_BATCH_SIZE)
                else {}
            ),
        ),
        "m365": M365Resource(
            login_url=env.get(environment.M365_LOGIN_URL, MICROSOFT_LOGIN_URL),
            graph_url=env.get(environment.M365_GRAPH_URL, MICROSOFT_GRAPH_URL),
            partner_tenant_id=dg.EnvVar(environment.M365_PARTNER_TENANT_ID),
            client_id=dg.EnvVar(environment.M365_CLIENT_ID),
            client_secret=dg.EnvVar(environment.M365_CLIENT_SECRET),
            refresh_token=dg.EnvVar(environment.M365_REFRESH_TOKEN)
            if env.get(environment.M365_REFRESH_TOKEN)
            else None,
            tenant_source=_tenant_source(env.get(environment.M365_TENANT_SOURCE, "contracts")),
            ca_bundle=_ca_bundle(env),
        ),
        "sync_settings": settings_from_file(env[SETTINGS_FILE_ENV])
        if env.get(SETTINGS_FILE_ENV)
        else SyncSettingsResource(),
    }
