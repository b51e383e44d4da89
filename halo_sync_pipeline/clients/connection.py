"""How the clients present themselves and check the server: the User-Agent and TLS verification."""

from __future__ import annotations

import functools
import importlib.metadata
import ssl

import httpx


def _package_version() -> str:
    try:
        return importlib.metadata.version("halo-sync-pipeline")
    except importlib.metadata.PackageNotFoundError:
        return "0"


USER_AGENT = f"halo-sync-pipeline/{_package_version()}"


@functools.cache
def _public_trust() -> ssl.SSLContext:
    # What httpx builds for every client given verify=True (certifi's bundle, or SSL_CERT_FILE/SSL_CERT_DIR),
    # built once per process: loading about 150 CA certificates takes 25–55 ms of CPU on the 2-core machine,
    # and a run makes a client per Halo asset, per Graph tenant slot and for msal (about 23: 0.6 s).
    # One context serves any number of connections and threads.
    return httpx.create_ssl_context(verify=True)


def ssl_verify(verify: str | bool) -> ssl.SSLContext | bool:
    """httpx's `verify` from a CA bundle path (e.g. the sandbox's) or a bool; True is the public trust
    store, one context shared by every client of the process."""
    if verify is True:
        return _public_trust()
    if verify is False:
        return False
    if not verify:
        raise ValueError("verify must be True, False or the path of a CA bundle file")
    # A CA bundle of one certificate (the sandbox's) loads in under a millisecond; a sandbox restarted on
    # the same path has a new CA, so this is not cached.
    return ssl.create_default_context(cafile=verify)
