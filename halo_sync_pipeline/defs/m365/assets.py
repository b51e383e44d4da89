"""Source assets read from Microsoft 365: customer tenants (with fetch status), their domains and users."""

import asyncio
from typing import Any

import dagster as dg
import pandas as pd

from halo_sync_pipeline.clients import frames
from halo_sync_pipeline.clients.graph import TenantLoad
from halo_sync_pipeline.defs.checks import ERROR, WARN, failure_result, schema_result, schema_spec
from halo_sync_pipeline.defs.heap import inherited_objects_frozen
from halo_sync_pipeline.defs.metadata import OWNER, counts_markdown, frame_metadata, markdown_table, request_metadata
from halo_sync_pipeline.defs.resources import M365Resource, SyncSettingsResource
from halo_sync_pipeline.rules import source_checks
from halo_sync_pipeline.rules.users import required_user_properties
from halo_sync_pipeline.schemas import sources

M365: dict[str, Any] = {"group_name": "m365", "kinds": {"microsoft365", "pandas"}, "owners": [OWNER]}


async def _load_everything(m365: M365Resource) -> tuple[list[TenantLoad], dict[str, int]]:
    async with m365.client() as client:
        tenants = await client.tenants()
        # Each tenant's users are typed into compact columns as it loads; its raw JSON is dropped at once.
        loads = await client.load_all(tenants, on_load=frames.compact_tenant_load)
        return loads, client.request_counts.snapshot() | client.token_request_counts.snapshot()


TENANTS_LOADED = dg.AssetCheckSpec(
    name="m365_tenants_loaded",
    asset="m365_tenants",
    blocking=True,
    description="Tenants whose users could not be read, with the error (warning: nothing is planned or written for "
    "them, the others sync); an error, stopping the run, when every tenant failed, which points at credentials, "
    "consent or a bug. What to do: consent the partner app in the customer tenant, renew GDAP, or fix the record "
    "the error names; then re-run.",
)
SCHEMAS = {
    "m365_tenants": sources.M365TenantsSchema,
    "m365_domains": sources.M365DomainsSchema,
    "m365_users": sources.M365UsersSchema,
}


def tenants_loaded_result(m365_tenants: pd.DataFrame) -> dg.AssetCheckResult:
    failures = source_checks.tenant_load_failures(m365_tenants)
    everything_failed = len(m365_tenants) > 0 and len(failures) == len(m365_tenants)
    return failure_result(
        failures,
        check_name=TENANTS_LOADED.name,
        asset="m365_tenants",
        severity=ERROR if everything_failed else WARN,
        what=f"of {len(m365_tenants)} tenants failed to load: nothing is written for them",
        what_to_do="Read each error: consent missing in the customer tenant (consent the partner app there), GDAP "
        "expired, throttling (it passes), or malformed data (the error names the user). The other tenants sync.",
    )


@dg.multi_asset(
    outs={
        "m365_tenants": dg.AssetOut(
            description="Every customer tenant of the partner (contracts or active GDAP relationships) with its "
            "fetch status: `loaded`, or `failed` with the error. Later stages never act on a failed tenant.",
            **M365,
        ),
        "m365_domains": dg.AssetOut(
            description="The domains of each loaded tenant (verified, default), from Graph /domains.", **M365
        ),
        "m365_users": dg.AssetOut(
            description="The users of each loaded tenant from Graph /users, with the properties the sync uses: "
            "UPN, names, phones, street address, every smtp address, licence count, enabled, guest.",
            **M365,
        ),
    },
    check_specs=[TENANTS_LOADED, *(schema_spec(name, schema) for name, schema in SCHEMAS.items())],
)
def m365_directory(context: dg.AssetExecutionContext, m365: M365Resource, sync_settings: SyncSettingsResource):
    """Reads all customer tenants concurrently (bounded); inside a tenant, domains and users at once, each
    paged sequentially.

    A tenant that fails (consent revoked, repeated 5xx, malformed data, users without a property the
    filters need) is recorded as failed and its partial data dropped; the others still load. The seed
    instead reused the previous tenant's users. The checks run in this same step.
    """
    with inherited_objects_frozen():
        loads, counts = asyncio.run(_load_everything(m365))
        tenants, domains, users = frames.m365_frames(loads, required_user_properties(sync_settings.settings()))
    failed = tenants[tenants["status"] == "failed"]
    if len(failed):
        context.log.warning(
            f"{len(failed)} of {len(tenants)} tenants failed to load; no action will be planned for them"
        )
    yield dg.Output(
        tenants,
        output_name="m365_tenants",
        metadata=frame_metadata(
            tenants,
            {
                "status": counts_markdown(tenants["status"], "status"),
                "failed_tenants": dg.MetadataValue.md(
                    markdown_table(failed[["display_name", "tenant_id", "error"]], 50)
                ),
                **request_metadata(counts),
            },
        ),
    )
    names = tenants.set_index("tenant_id")["display_name"]
    yield dg.Output(domains, output_name="m365_domains", metadata=frame_metadata(domains, tenant_names=names))
    yield dg.Output(users, output_name="m365_users", metadata=frame_metadata(users, tenant_names=names))
    yield tenants_loaded_result(tenants)
    for name, frame in (("m365_tenants", tenants), ("m365_domains", domains), ("m365_users", users)):
        yield schema_result(name, SCHEMAS[name], frame)


m365_assets = [m365_directory]
