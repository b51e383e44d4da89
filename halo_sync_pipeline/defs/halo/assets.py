"""Source assets read from Halo PSA: companies, contacts, sites and tenant mappings."""

import dagster as dg
import pandas as pd

from halo_sync_pipeline.clients import frames
from halo_sync_pipeline.defs.checks import schema_check
from halo_sync_pipeline.defs.metadata import OWNER, frame_metadata, request_metadata
from halo_sync_pipeline.defs.resources import HaloResource, SyncSettingsResource
from halo_sync_pipeline.schemas import sources

HALO = {"group_name": "halo", "kinds": {"halo", "pandas"}, "owners": [OWNER]}


@dg.asset(**HALO)
def halo_companies(context: dg.AssetExecutionContext, halo: HaloResource) -> dg.Output[pd.DataFrame]:
    """Every Halo client (company), active and inactive: id, name, website, main site.

    Read through the seed's saved "companies" report (one request) or, for API applications
    without reporting rights, by paging /api/Client.
    """
    with halo.client() as client:
        frame = frames.halo_companies_frame(client.companies())
        counts = client.request_counts.snapshot()
    return dg.Output(frame, metadata=frame_metadata(frame, request_metadata(counts)))


@dg.asset(**HALO)
def halo_contacts(
    context: dg.AssetExecutionContext, halo: HaloResource, sync_settings: SyncSettingsResource
) -> dg.Output[pd.DataFrame]:
    """Every Halo user (contact), active and inactive, with its Azure object id and keep-active field.

    Read through the seed's saved "contacts" report, which carries the keep-active custom field
    as a column, or by paging /api/Users (plus one detail request per active contact for the field).
    """
    keep_active_field = sync_settings.keep_active_field
    with halo.client() as client:
        frame = frames.halo_contacts_frame(client.contacts(keep_active_field), keep_active_field)
        counts = client.request_counts.snapshot()
    extra = {"active_contacts": int((~frame["inactive"]).sum()), **request_metadata(counts)}
    return dg.Output(frame, metadata=frame_metadata(frame, extra))


@dg.asset(**HALO)
def halo_sites(context: dg.AssetExecutionContext, halo: HaloResource) -> dg.Output[pd.DataFrame]:
    """Every Halo site with its company, address line 1 and whether it is the company's main site.

    New contacts go to the site whose address matches the user's street address, else the main site.
    """
    with halo.client() as client:
        frame = frames.halo_sites_frame(client.sites())
        counts = client.request_counts.snapshot()
    return dg.Output(frame, metadata=frame_metadata(frame, request_metadata(counts)))


@dg.asset(**HALO)
def halo_tenant_mappings(context: dg.AssetExecutionContext, halo: HaloResource) -> dg.Output[pd.DataFrame]:
    """Microsoft tenant ↔ Halo company links from Halo's Azure AD connection (type 2) mappings.

    The first and strongest matching rule: a tenant listed here maps to its company outright.
    """
    with halo.client() as client:
        frame = frames.halo_tenant_mappings_frame(client.tenant_mappings())
        counts = client.request_counts.snapshot()
    return dg.Output(frame, metadata=frame_metadata(frame, request_metadata(counts)))


halo_assets = [halo_companies, halo_contacts, halo_sites, halo_tenant_mappings]
halo_checks = [
    schema_check(halo_companies, sources.HaloCompaniesSchema),
    schema_check(halo_contacts, sources.HaloContactsSchema),
    schema_check(halo_sites, sources.HaloSitesSchema),
    schema_check(halo_tenant_mappings, sources.HaloTenantMappingsSchema),
]
