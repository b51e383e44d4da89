"""Normalisation of names, website hosts, email domains and UPNs, scalar and vectorised.

Missing values (None, NA, blank strings) normalise to None (scalars) or NA (Series).
"""

from __future__ import annotations

import re

import pandas as pd

_WHITESPACE = re.compile(r"\s+")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*://")
# Seed bug: the seed stripped with the regex `www.`, which removed `www` + any character
# anywhere (`wwwidget.com` -> `idget.com`). Only a literal leading `www.` goes.
_LEADING_WWW = re.compile(r"^www\.")
_PORT = re.compile(r":\d*$")


def _text(value: object) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip()
    return text or None


def normalise_company_name(name: object) -> str | None:
    """Case-folded, trimmed, inner whitespace collapsed to one space; None when blank."""
    text = _text(name)
    return None if text is None else _WHITESPACE.sub(" ", text.casefold())


def normalise_company_names(names: pd.Series) -> pd.Series:
    """Vectorised `normalise_company_name` (result dtype `string`)."""
    return names.astype("string").str.casefold().str.strip().str.replace(r"\s+", " ", regex=True).replace("", pd.NA)


def website_host(url: object) -> str | None:
    """Host of a website as typed in Halo: lower-case, without scheme, userinfo, port, path,
    query, fragment, trailing dot and a literal leading `www.`; None when there is no host."""
    text = _text(url)
    if text is None:
        return None
    text = _SCHEME.sub("", text.lower()).removeprefix("//")
    host = re.split(r"[/?#\\]", text, maxsplit=1)[0]
    host = host.rpartition("@")[2]
    host = _PORT.sub("", host).rstrip(".")
    host = _LEADING_WWW.sub("", host)
    return host or None


def website_hosts(urls: pd.Series) -> pd.Series:
    """Vectorised `website_host` (result dtype `string`); computed once per distinct value."""
    distinct = {url: website_host(url) for url in urls.dropna().unique()}
    return urls.map(distinct).astype("string")


def email_domain(email: object) -> str | None:
    """Lower-cased part after the last `@`; None when the address has no `@` or no domain."""
    text = _text(email)
    if text is None or "@" not in text:
        return None
    return text.rpartition("@")[2].lower() or None


def email_domains(emails: pd.Series) -> pd.Series:
    """Vectorised `email_domain` (result dtype `string`)."""
    return emails.astype("string").str.strip().str.lower().str.extract(r"@([^@]+)$", expand=False).astype("string")


def upn_local_part(upn: object) -> str | None:
    """Part of a UPN before its (last) `@`; the whole text when there is no `@`."""
    text = _text(upn)
    if text is None:
        return None
    return text.rpartition("@")[0] if "@" in text else text


def upn_local_parts(upns: pd.Series) -> pd.Series:
    """Vectorised `upn_local_part` (result dtype `string`)."""
    upns = upns.astype("string").str.strip()
    return upns.str.replace(r"@[^@]*$", "", regex=True).replace("", pd.NA)
