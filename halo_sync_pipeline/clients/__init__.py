"""API clients for Halo PSA and Microsoft Graph, and the builders of the source DataFrames."""

from .auth import HaloSession
from .errors import (
    ApiError,
    ForeignNextLinkError,
    GraphApiError,
    GraphAuthError,
    HaloApiError,
    HaloAuthError,
    HaloReportError,
    HaloWriteError,
    MalformedDataError,
)
from .graph import GraphClient, TenantLoad, TenantRef
from .halo import HaloClient
from .retry import RetryPolicy

__all__ = [
    "ApiError",
    "ForeignNextLinkError",
    "GraphApiError",
    "GraphAuthError",
    "GraphClient",
    "HaloApiError",
    "HaloAuthError",
    "HaloClient",
    "HaloReportError",
    "HaloSession",
    "HaloWriteError",
    "MalformedDataError",
    "RetryPolicy",
    "TenantLoad",
    "TenantRef",
]
