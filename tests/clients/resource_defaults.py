"""Client settings as the resources give them: their Field defaults are the clients' one source."""

from __future__ import annotations

from typing import Any

import dagster as dg

from halo_sync_pipeline.clients.retry import RetryPolicy
from halo_sync_pipeline.defs.resources import HaloResource, M365Resource


def _default(resource: type[dg.ConfigurableResource], name: str) -> Any:
    return resource.model_fields[name].default


def halo_settings(**overrides: Any) -> dict[str, Any]:
    """HaloClient's keyword arguments with `HaloResource`'s defaults, then `overrides`."""
    return {
        "timeout": _default(HaloResource, "timeout_s"),
        "retry_policy": RetryPolicy(deadline_s=_default(HaloResource, "retry_deadline_s")),
        "page_size": _default(HaloResource, "page_size"),
        "write_batch_size": _default(HaloResource, "write_batch_size"),
        "max_connections": _default(HaloResource, "max_connections"),
    } | overrides


def graph_settings(**overrides: Any) -> dict[str, Any]:
    """GraphClient's keyword arguments with `M365Resource`'s defaults, then `overrides`."""
    return {
        "timeout": _default(M365Resource, "timeout_s"),
        "retry_policy": RetryPolicy(deadline_s=_default(M365Resource, "retry_deadline_s")),
        "concurrency": _default(M365Resource, "concurrency"),
    } | overrides
