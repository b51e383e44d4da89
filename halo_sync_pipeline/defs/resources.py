"""Dagster resources: the two API connections and the sync settings, declared once.

Secrets come only through `EnvVar`, which Dagster resolves at run time and never shows in the UI.
Base URLs and the CA bundle are plain environment values so that the sandbox's env file
(`set -a; . .sandbox/.../sandbox.env`) is all it takes to point the pipeline at the sandbox.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import Field, PrivateAttr

from halo_sync_pipeline.clients.graph import DEFAULT_CONCURRENCY, GraphClient
from halo_sync_pipeline.clients.halo import HaloClient, HaloSession
from halo_sync_pipeline.settings import SyncSettings

MICROSOFT_LOGIN_URL = "https://login.microsoftonline.com"
MICROSOFT_GRAPH_URL = "https://graph.microsoft.com"


def _ca_bundle(env: Mapping[str, str]) -> str | None:
    # The sandbox's CA; unset in real use, where the system trust store applies.
    return env.get("HALO_SYNC_CA_BUNDLE") or None


class HaloResource(dg.ConfigurableResource):
    """A Halo PSA API application (client credentials) with read access to reports and write access to clients/users."""

    url: str = Field(description="Halo base URL, e.g. https://yourcompany.halopsa.com")
    client_id: str
    client_secret: str = Field(description="Client secret of the Halo API application (set through an EnvVar).")
    tenant: str = Field(default="", description="Halo tenant name (hosted Halo); empty for self-hosted.")
    ca_bundle: str | None = Field(default=None, description="CA bundle path (the sandbox's); None = system trust.")
    use_reports: bool = Field(default=True, description="Read through saved SQL reports (few requests); False = REST paging.")
    page_size: int = Field(default=500, ge=1, le=5000)
    write_batch_size: int = Field(default=100, ge=1, le=1000)
    timeout_s: float = Field(default=30.0, gt=0)
    retry_deadline_s: float = Field(default=120.0, gt=0)
    # One token for every client of a run (one per asset), not one each: Halo limits requests.
    _session: HaloSession = PrivateAttr(default_factory=HaloSession)

    def client(self) -> HaloClient:
        return HaloClient(
            self.url,
            self.client_id,
            self.client_secret,
            self.tenant,
            verify=self.ca_bundle or True,
            timeout=self.timeout_s,
            retry_deadline_s=self.retry_deadline_s,
            reports_mode=self.use_reports,
            page_size=self.page_size,
            write_batch_size=self.write_batch_size,
            session=self._session,
        )


class M365Resource(dg.ConfigurableResource):
    """The partner's Microsoft Entra app, reading customer tenants through Microsoft Graph."""

    login_url: str = MICROSOFT_LOGIN_URL
    graph_url: str = MICROSOFT_GRAPH_URL
    partner_tenant_id: str
    client_id: str
    client_secret: str = Field(description="Client secret of the partner app (set through an EnvVar).")
    refresh_token: str | None = Field(
        default=None, description="Secure Application Model refresh token; None = app-only tokens per customer tenant."
    )
    tenant_source: Literal["contracts", "gdap"] = "contracts"
    concurrency: int = Field(
        default=DEFAULT_CONCURRENCY, ge=1, le=64,
        description="Customer tenants read at the same time. Graph throttles per tenant, not per partner; 16 reads "
        "500 tenants at 100 ms per request in about 15 s (4 requests each: 500 / 16 × 0.4 s).",
    )
    ca_bundle: str | None = None
    timeout_s: float = Field(default=30.0, gt=0)
    retry_deadline_s: float = Field(default=180.0, gt=0)

    def client(self) -> GraphClient:
        return GraphClient(
            self.login_url,
            self.graph_url,
            self.partner_tenant_id,
            self.client_id,
            self.client_secret,
            refresh_token=self.refresh_token or None,
            app_only=not self.refresh_token,
            tenant_source=self.tenant_source,
            verify=self.ca_bundle or True,
            concurrency=self.concurrency,
            timeout=self.timeout_s,
            retry_deadline_s=self.retry_deadline_s,
        )


class SyncSettingsResource(dg.ConfigurableResource):
    """What the plan does: the seed script's switches, with its defaults (README, "Settings").

    Deployments set them in a settings file (`HALO_SYNC_SETTINGS_FILE`), which every run uses, the
    schedules' included; a launch may still override them under `resources.sync_settings.config`."""

    exclude_tenants: list[str] = Field(
        default=[], description="Tenants skipped entirely: display names or tenant ids, case-insensitive (method `excluded`)."
    )
    licensed_users_only: bool = Field(
        default=True, description="Sync only users with an assigned licence (the seed's $licensedUsersOnly)."
    )
    exclude_disabled_accounts: bool = Field(default=True, description="Do not sync users whose account is disabled.")
    exclude_guests: bool = Field(default=True, description="Do not sync guest users (userType Guest).")
    exclude_upn_patterns: list[str] = Field(
        default=["admin"],
        description="Case-insensitive regexes searched in the local part of the UPN; matching users are never created, "
        "paired or reactivated, and their contacts never deactivated.",
    )
    keep_active_field: str = Field(
        default="CFM365SyncKeepActive", description="Halo user custom field that protects a contact from deactivation."
    )
    keep_active_value: str = Field(
        default="2",
        description="The keep-active value; compared trimmed, case-insensitively and numerically when both sides are "
        "numbers (\"02\" and 2.0 equal \"2\").",
    )
    general_user_name: str = Field(
        default="General User", description="Halo's catch-all contact per company: never deactivated, not counted by the guard."
    )
    set_halo_tenant_ids: bool = Field(
        default=True,
        description="PLAN setting: plan tenant-id write-backs for companies matched by name, website or contact "
        "domains. The apply's allow_tenant_id_writes can only narrow a run further.",
    )
    create_contacts: bool = Field(
        default=True, description="PLAN setting: plan creates for new users. The apply's allow_creates can only narrow a run."
    )
    deactivate_contacts: bool = Field(
        default=True,
        description="PLAN setting: plan deactivations. Off: would-be deactivations are still listed (held) in the "
        "inactive report. The apply's allow_deactivations can only narrow a run.",
    )
    update_contact_fields: bool = Field(
        default=False, description="Plan updates of linked contacts' names and phones (a blank M365 value never overwrites Halo)."
    )
    guard_min_contacts: int = Field(
        default=10, description="Deactivation guard: a tenant's deactivations are held above max(this, guard_fraction × active contacts)."
    )
    guard_fraction: float = Field(default=0.5, description="Deactivation guard: fraction of the company's active contacts.")
    allow_mass_deactivation: list[str] = Field(
        default=[], description="Tenants (names or ids) exempt from the deactivation guard."
    )
    report_path: str | None = Field(
        default=None,
        description="Also write the inactive report to this path; the run's export folder is then created beside it. "
        "Default: reports/ in the Dagster storage folder.",
    )

    def settings(self) -> SyncSettings:
        values = self.model_dump()
        for key in ("exclude_tenants", "exclude_upn_patterns", "allow_mass_deactivation"):
            values[key] = tuple(values[key])
        return SyncSettings(**values)


SETTINGS_FILE_ENV = "HALO_SYNC_SETTINGS_FILE"


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
            url=dg.EnvVar("HALO_URL"),
            client_id=dg.EnvVar("HALO_CLIENT_ID"),
            client_secret=dg.EnvVar("HALO_CLIENT_SECRET"),
            tenant=env.get("HALO_TENANT", ""),
            ca_bundle=_ca_bundle(env),
            use_reports=env.get("HALO_USE_REPORTS", "true").lower() != "false",
            write_batch_size=int(env.get("HALO_WRITE_BATCH_SIZE", "100")),
        ),
        "m365": M365Resource(
            login_url=env.get("M365_LOGIN_URL", MICROSOFT_LOGIN_URL),
            graph_url=env.get("M365_GRAPH_URL", MICROSOFT_GRAPH_URL),
            partner_tenant_id=dg.EnvVar("M365_PARTNER_TENANT_ID"),
            client_id=dg.EnvVar("M365_CLIENT_ID"),
            client_secret=dg.EnvVar("M365_CLIENT_SECRET"),
            refresh_token=dg.EnvVar("M365_REFRESH_TOKEN") if env.get("M365_REFRESH_TOKEN") else None,
            tenant_source=env.get("M365_TENANT_SOURCE", "contracts"),
            ca_bundle=_ca_bundle(env),
        ),
        "sync_settings": settings_from_file(env[SETTINGS_FILE_ENV]) if env.get(SETTINGS_FILE_ENV) else SyncSettingsResource(),
    }
