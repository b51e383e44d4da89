"""How the clients present themselves and check the server: the User-Agent and TLS verification."""

from __future__ import annotations

import importlib.metadata
import ssl


def _package_version() -> str:
    try:
        return importlib.metadata.version("halo-sync-pipeline")
    except importlib.metadata.PackageNotFoundError:
        return "0"


USER_AGENT = f"halo-sync-pipeline/{_package_version()}"


def ssl_verify(verify: str | bool) -> ssl.SSLContext | bool:
    """httpx's `verify` from a CA bundle path (e.g. the sandbox's) or a bool."""
    if isinstance(verify, bool):
        return verify
    if not verify:
        raise ValueError("verify must be True, False or the path of a CA bundle file")
    return ssl.create_default_context(cafile=verify)
