"""Source assets read from Halo PSA: companies, contacts, sites and tenant mappings.

Each asset's schema check runs inside its step; odd records are quarantined (rules/quarantine.py) and
listed by the `halo_records_quarantined` warning, which needs all four frames and so runs in tenant_review's step.
"""

from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
import pandas as pd
import pandera.pandas as pa

from halo_sync_pipeline.clients import frames
from halo_sync_pipeline.defs.checks import schema_result, schema_spec
from halo_sync_pipeline.defs.heap import inherited_objects_frozen
from halo_sync_pipeline.defs.metadata import OWNER, frame_metadata, request_metadata
from halo_sync_pipeline.defs.resources import HaloResource, SyncSettingsResource
from halo_sync_pipeline.rules import quarantine
from halo_sync_pipeline.schemas import sources

HALO: dict[str, Any] = {"group_name": "halo", "kinds": {"halo", "pandas"}, "owners": [OWNER]}


def _quarantined(
    context: dg.AssetExecutionContext,
    frame: pd.DataFrame,
    rule: Callable[[pd.DataFrame], pd.DataFrame],
    schema: type[pa.DataFrameModel],
    counts: dict[str, int],
    extra: dict[str, Any] | None = None,
) -> Iterator[dg.Output[pd.DataFrame] | dg.AssetCheckResult]:
    """The frame after its quarantine rule, with the odd and the unreadable records in the metadata, then
    its schema check. A record without a readable id cannot be kept in the frame; it is left out, logged
    and listed here."""
    unreadable = frame.attrs.pop("unreadable_records", [])
    frame = rule(frame)
    frame.attrs.clear()
    for problem in unreadable:
        context.log.warning(f"left out an unreadable Halo record: {problem}")
    odd = frame.loc[frame["quarantine"].notna()]
    metadata = {
        "quarantined_records": len(odd),
        "unreadable_records": dg.MetadataValue.md("\n".join(f"- {p}" for p in unreadable) or "_(none)_"),
        **(extra or {}),
        **request_metadata(counts),
    }
    asset = context.asset_key.to_user_string()
    yield dg.Output(frame, metadata=frame_metadata(frame, metadata))
    yield schema_result(asset, schema, frame)


@dg.asset(**HALO, check_specs=[schema_spec("halo_companies", sources.HaloCompaniesSchema)])
def halo_companies(context: dg.AssetExecutionContext, halo: HaloResource):
    """Every Halo client (company), active and inactive: id, name, website, main site.

    Read through the seed's saved "companies" report (one request) or, for API applications
    without reporting rights, by paging /api/Client.
    """
    with halo.client() as client:
        frame = frames.halo_companies_frame(client.companies())
        counts = client.request_counts.snapshot()
    yield from _quarantined(context, frame, quarantine.quarantine_companies, sources.HaloCompaniesSchema, counts)


@dg.asset(**HALO, check_specs=[schema_spec("halo_contacts", sources.HaloContactsSchema)])
def halo_contacts(context: dg.AssetExecutionContext, halo: HaloResource, sync_settings: SyncSettingsResource):
    """Every Halo user (contact), active and inactive, with its Azure object id and keep-active field.

    Read through the seed's saved "contacts" report, which carries the keep-active custom field
    as a column, or by paging /api/Users (plus one detail request per active contact for the field).
    """
    keep_active_field = sync_settings.keep_active_field
    with halo.client() as client, inherited_objects_frozen():
        frame = frames.halo_contacts_frame(client.contacts(keep_active_field), keep_active_field)
        counts = client.request_counts.snapshot()
    extra = {"active_contacts": int((~frame["inactive"]).sum())}
    yield from _quarantined(context, frame, quarantine.quarantine_contacts, sources.HaloContactsSchema, counts, extra)


@dg.asset(**HALO, check_specs=[schema_spec("halo_sites", sources.HaloSitesSchema)])
def halo_sites(context: dg.AssetExecutionContext, halo: HaloResource):
    """Every Halo site with its company, address line 1 and whether it is the company's main site.

    New contacts go to the site whose address matches the user's street address, else the main site.
    """
    with halo.client() as client:
        frame = frames.halo_sites_frame(client.sites())
        counts = client.request_counts.snapshot()
    yield from _quarantined(context, frame, quarantine.quarantine_sites, sources.HaloSitesSchema, counts)


@dg.asset(**HALO, check_specs=[schema_spec("halo_tenant_mappings", sources.HaloTenantMappingsSchema)])
def halo_tenant_mappings(context: dg.AssetExecutionContext, halo: HaloResource):
    """Microsoft tenant ↔ Halo company links from Halo's Azure AD connection (type 2) mappings.

    The first and strongest matching rule: a tenant listed here maps to its company outright.
    """
    with halo.client() as client:
        frame = frames.halo_tenant_mappings_frame(client.tenant_mappings())
        counts = client.request_counts.snapshot()
    yield from _quarantined(
        context, frame, quarantine.quarantine_tenant_mappings, sources.HaloTenantMappingsSchema, counts
    )


halo_assets = [halo_companies, halo_contacts, halo_sites, halo_tenant_mappings]
