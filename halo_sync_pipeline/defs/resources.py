"""Dagster resources: the two API connections and the sync settings, declared once.

Secrets come only through `EnvVar`, which Dagster resolves at run time and never shows in the UI.
Base URLs and the CA bundle are plain environment values so that the sandbox's env file
(`set -a; . .sandbox/.../sandbox.env`) is all it takes to point the pipeline at the sandbox.
"""

from __future__ import annotations

import os
from typing import Literal

import dagster as dg
from pydantic import Field, PrivateAttr

from halo_sync_pipeline.clients.graph import GraphClient
from halo_sync_pipeline.clients.halo import HaloClient, HaloSession
from halo_sync_pipeline.settings import SyncSettings

MICROSOFT_LOGIN_URL = "https://login.microsoftonline.com"
MICROSOFT_GRAPH_URL = "https://graph.microsoft.com"


def _ca_bundle() -> str | None:
    # The sandbox's CA; unset in real use, where the system trust store applies.
    return os.environ.get("HALO_SYNC_CA_BUNDLE") or None


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
    concurrency: int = Field(default=8, ge=1, le=64)
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
    """The seed script's switches (see the README's settings table); defaults are the seed's."""

    exclude_tenants: list[str] = []
    licensed_users_only: bool = True
    exclude_disabled_accounts: bool = True
    exclude_guests: bool = True
    exclude_upn_patterns: list[str] = ["admin"]
    keep_active_field: str = "CFM365SyncKeepActive"
    keep_active_value: str = "2"
    general_user_name: str = "General User"
    set_halo_tenant_ids: bool = True
    create_contacts: bool = True
    deactivate_contacts: bool = True
    update_contact_fields: bool = False
    guard_min_contacts: int = 10
    guard_fraction: float = 0.5
    allow_mass_deactivation: list[str] = []
    report_path: str | None = None

    def settings(self) -> SyncSettings:
        values = self.model_dump()
        for key in ("exclude_tenants", "exclude_upn_patterns", "allow_mass_deactivation"):
            values[key] = tuple(values[key])
        return SyncSettings(**values)


def production_resources() -> dict[str, dg.ConfigurableResource]:
    """Resources read from the environment of a real deployment (or of the sandbox's env file)."""
    return {
        "halo": HaloResource(
            url=dg.EnvVar("HALO_URL"),
            client_id=dg.EnvVar("HALO_CLIENT_ID"),
            client_secret=dg.EnvVar("HALO_CLIENT_SECRET"),
            tenant=os.environ.get("HALO_TENANT", ""),
            ca_bundle=_ca_bundle(),
            use_reports=os.environ.get("HALO_USE_REPORTS", "true").lower() != "false",
            write_batch_size=int(os.environ.get("HALO_WRITE_BATCH_SIZE", "100")),
        ),
        "m365": M365Resource(
            login_url=os.environ.get("M365_LOGIN_URL", MICROSOFT_LOGIN_URL),
            graph_url=os.environ.get("M365_GRAPH_URL", MICROSOFT_GRAPH_URL),
            partner_tenant_id=dg.EnvVar("M365_PARTNER_TENANT_ID"),
            client_id=dg.EnvVar("M365_CLIENT_ID"),
            client_secret=dg.EnvVar("M365_CLIENT_SECRET"),
            refresh_token=dg.EnvVar("M365_REFRESH_TOKEN") if os.environ.get("M365_REFRESH_TOKEN") else None,
            tenant_source=os.environ.get("M365_TENANT_SOURCE", "contracts"),
            ca_bundle=_ca_bundle(),
        ),
        "sync_settings": SyncSettingsResource(),
    }
