"""Errors raised by the API clients. Their text carries method, path (never a query string that
could hold a secret), status and the server's own message — never a token, secret or request body."""

from __future__ import annotations

MAX_DETAIL_CHARS = 300


def short_detail(text: str) -> str:
    """A server message trimmed to one short line, for error texts."""
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_DETAIL_CHARS else flat[: MAX_DETAIL_CHARS - 1] + "…"


class ApiError(Exception):
    """A call to Halo or Graph failed (after retries where retrying made sense)."""

    def __init__(self, message: str, *, status_code: int | None = None, method: str = "", path: str = "") -> None:
        self.status_code = status_code
        self.method = method
        self.path = path
        super().__init__(message)


class HaloApiError(ApiError):
    """A Halo read or authentication failed."""


class HaloAuthError(HaloApiError):
    """Halo refused the client credentials (or the token endpoint could not be used)."""


class HaloReportError(HaloApiError):
    """A Halo saved report could not be found, created or loaded (e.g. its SQL failed: `load_error`)."""


class HaloWriteError(HaloApiError):
    """A Halo upsert (POST of a JSON array) was refused; `halo_message` is Halo's own explanation."""

    def __init__(
        self, message: str, *, status_code: int | None, halo_message: str, method: str = "POST", path: str = ""
    ) -> None:
        self.halo_message = halo_message
        super().__init__(message, status_code=status_code, method=method, path=path)


class GraphApiError(ApiError):
    """A Microsoft Graph or identity call failed."""


class GraphAuthError(GraphApiError):
    """No token could be obtained for a tenant (consent missing, bad refresh token, ...)."""


class ForeignNextLinkError(GraphApiError):
    """Graph returned an `@odata.nextLink` to a host other than the configured Graph host; not followed."""


class MalformedDataError(GraphApiError):
    """A Graph record lacks what the sync needs (e.g. a user without id or userPrincipalName)."""
