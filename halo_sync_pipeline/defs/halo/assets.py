"""Source assets read from Halo PSA: companies, contacts, sites and tenant mappings."""

import dagster as dg
import pandas as pd

from halo_sync_pipeline.clients import frames
from halo_sync_pipeline.defs.checks import failure_result, schema_check
from halo_sync_pipeline.defs.metadata import OWNER, frame_metadata, request_metadata
from halo_sync_pipeline.defs.resources import HaloResource, SyncSettingsResource
from halo_sync_pipeline.rules import quarantine
from halo_sync_pipeline.schemas import sources

HALO = {"group_name": "halo", "kinds": {"halo", "pandas"}, "owners": [OWNER]}


def _quarantined(
    context: dg.AssetExecutionContext, frame: pd.DataFrame, rule, counts: dict[str, int], extra: dict | None = None
) -> dg.Output[pd.DataFrame]:
    """The frame after its quarantine rule, with the odd and the unreadable records in the metadata.

    A record without a readable id cannot be kept in the frame; it is left out, logged and listed here."""
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
    return dg.Output(frame, metadata=frame_metadata(frame, metadata))


@dg.asset(**HALO)
def halo_companies(context: dg.AssetExecutionContext, halo: HaloResource) -> dg.Output[pd.DataFrame]:
    """Every Halo client (company), active and inactive: id, name, website, main site.

    Read through the seed's saved "companies" report (one request) or, for API applications
    without reporting rights, by paging /api/Client.
    """
    with halo.client() as client:
        frame = frames.halo_companies_frame(client.companies())
        counts = client.request_counts.snapshot()
    return _quarantined(context, frame, quarantine.quarantine_companies, counts)


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
    extra = {"active_contacts": int((~frame["inactive"]).sum())}
    return _quarantined(context, frame, quarantine.quarantine_contacts, counts, extra)


@dg.asset(**HALO)
def halo_sites(context: dg.AssetExecutionContext, halo: HaloResource) -> dg.Output[pd.DataFrame]:
    """Every Halo site with its company, address line 1 and whether it is the company's main site.

    New contacts go to the site whose address matches the user's street address, else the main site.
    """
    with halo.client() as client:
        frame = frames.halo_sites_frame(client.sites())
        counts = client.request_counts.snapshot()
    return _quarantined(context, frame, quarantine.quarantine_sites, counts)


@dg.asset(**HALO)
def halo_tenant_mappings(context: dg.AssetExecutionContext, halo: HaloResource) -> dg.Output[pd.DataFrame]:
    """Microsoft tenant ↔ Halo company links from Halo's Azure AD connection (type 2) mappings.

    The first and strongest matching rule: a tenant listed here maps to its company outright.
    """
    with halo.client() as client:
        frame = frames.halo_tenant_mappings_frame(client.tenant_mappings())
        counts = client.request_counts.snapshot()
    return _quarantined(context, frame, quarantine.quarantine_tenant_mappings, counts)


@dg.asset_check(
    asset=halo_contacts,
    blocking=False,
    additional_ins={
        "halo_companies": dg.AssetIn("halo_companies"),
        "halo_sites": dg.AssetIn("halo_sites"),
        "halo_tenant_mappings": dg.AssetIn("halo_tenant_mappings"),
    },
    description="Odd Halo records the sync sets aside instead of stopping: contacts whose azureoid is not a GUID, "
    "tenant mappings to a non-GUID tenant id, companies with several invoice sites, ids listed twice, missing "
    "names. Each row says what is wrong and how the sync treats it; fix the record in Halo to clear it.",
)
def halo_records_quarantined(
    halo_contacts: pd.DataFrame, halo_companies: pd.DataFrame, halo_sites: pd.DataFrame, halo_tenant_mappings: pd.DataFrame
) -> dg.AssetCheckResult:
    found = quarantine.quarantined_records(halo_companies, halo_contacts, halo_sites, halo_tenant_mappings)
    return failure_result(found, severity=dg.AssetCheckSeverity.WARN, what="Halo records quarantined")


halo_assets = [halo_companies, halo_contacts, halo_sites, halo_tenant_mappings]
halo_checks = [
    halo_records_quarantined,
    schema_check(halo_companies, sources.HaloCompaniesSchema),
    schema_check(halo_contacts, sources.HaloContactsSchema),
    schema_check(halo_sites, sources.HaloSitesSchema),
    schema_check(halo_tenant_mappings, sources.HaloTenantMappingsSchema),
]
