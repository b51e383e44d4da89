"""Odd Halo records: found, noted in the frame's `quarantine` column, and treated conservatively.

Real Halo databases hold records that no form would create today: a contact whose azureoid is `n/a`, a
tenant mapping to `not-a-guid`, a company with two invoice sites, a record listed twice, a missing name.
One such record must never stop the estate, so each `quarantine_*` rule keeps the frame's contract
(types, keys) and writes what is wrong into `quarantine`; the matching and contact rules then treat the
record conservatively (see each rule), and the `halo_records_quarantined` check lists them all.
"""

from __future__ import annotations

import pandas as pd

from halo_sync_pipeline.rules.normalise import normalise_guid

QUARANTINE_COLUMNS = ["kind", "record_id", "company_id", "problem", "treatment"]


def _note(frame: pd.DataFrame, where: pd.Series, problem: pd.Series | str) -> pd.Series:
    """`frame.quarantine` with `problem` appended (`; `) on the rows `where` is True."""
    problem = pd.Series(problem, index=frame.index, dtype="string") if isinstance(problem, str) else problem
    current = frame["quarantine"].astype("string")
    joined = (current + "; " + problem).fillna(problem)
    return current.mask(where.fillna(False).astype(bool), joined).astype("string")


def _drop_duplicate_ids(frame: pd.DataFrame, id_column: str) -> pd.DataFrame:
    """One row per id: the first is kept and quarantined with the number of copies (which copy is
    right cannot be known, so the record is never written)."""
    copies = frame.groupby(id_column)[id_column].transform("size")
    kept = frame.loc[~frame[id_column].duplicated(keep="first")].copy()
    counted = copies.loc[kept.index]
    kept["quarantine"] = _note(kept, counted > 1, "id listed " + counted.astype("string") + " times by Halo")
    return kept.reset_index(drop=True)


def _missing_name(frame: pd.DataFrame) -> pd.Series:
    return frame["name"].astype("string").str.strip().replace("", pd.NA).isna()


def quarantine_companies(companies: pd.DataFrame) -> pd.DataFrame:
    """Duplicated ids and missing names. A tenant whose match is a quarantined company is left
    unmatched (`company_quarantined`): no write-back, no contact actions."""
    out = _drop_duplicate_ids(companies, "company_id")
    out["quarantine"] = _note(out, _missing_name(out), "name missing")
    return out


def quarantine_contacts(contacts: pd.DataFrame) -> pd.DataFrame:
    """Duplicated ids, missing names and azureoids that are not GUIDs (`{GUID}` is normalised, `n/a` is
    not a GUID and is cleared). A quarantined contact is never written; its addresses still count, so a
    user who carries one gets a held create rather than a duplicate."""
    out = _drop_duplicate_ids(contacts, "contact_id")
    raw = out["azureoid"].astype("string")
    normalised = pd.Series([normalise_guid(v) for v in raw], index=out.index, dtype="string")
    bad_oid = raw.notna() & normalised.isna()
    out["quarantine"] = _note(out, bad_oid, 'azureoid "' + raw.fillna("") + '" is not a GUID')
    out["azureoid"] = normalised
    out["quarantine"] = _note(out, _missing_name(out), "name missing")
    return out


def quarantine_sites(sites: pd.DataFrame) -> pd.DataFrame:
    """Duplicated ids, missing names, and several invoice sites of one company: the lowest id stays the
    main site, the others are noted and no longer main. A quarantined site gets no new contacts."""
    out = _drop_duplicate_ids(sites, "site_id")
    out["quarantine"] = _note(out, _missing_name(out), "name missing")
    mains = out.loc[out["is_main"]].sort_values("site_id")
    extra = mains.loc[mains["company_id"].duplicated(keep="first")]
    if not extra.empty:
        lowest = mains.drop_duplicates("company_id").set_index("company_id")["site_id"]
        all_ids = mains.groupby("company_id")["site_id"].agg(lambda ids: ", ".join(map(str, ids)))
        is_extra = out["site_id"].isin(extra["site_id"])
        company = out["company_id"]
        problem = (
            "company "
            + company.astype("string")
            + " has several invoice sites ("
            + company.map(all_ids).astype("string")
            + "); site "
            + company.map(lowest).astype("string")
            + " (lowest id) is its main site"
        )
        out["quarantine"] = _note(out, is_extra, problem)
        out["is_main"] = out["is_main"] & ~is_extra
    return out


def quarantine_tenant_mappings(mappings: pd.DataFrame) -> pd.DataFrame:
    """Tenant ids that are not GUIDs (`{GUID}` normalised); such an entry is ignored by the matching.
    A (tenant, company) pair listed twice is kept once."""
    out = mappings.copy()
    raw = out["tenant_id"].astype("string")
    normalised = pd.Series([normalise_guid(v) for v in raw], index=out.index, dtype="string")
    out["quarantine"] = _note(out, normalised.isna(), 'tenant id "' + raw.fillna("") + '" is not a GUID')
    out["tenant_id"] = normalised.fillna(raw)
    repeated = out["quarantine"].isna() & out.duplicated(["tenant_id", "company_id"], keep="first")
    return out.loc[~repeated].reset_index(drop=True)


def usable(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of a Halo frame that nothing is wrong with."""
    return frame.loc[frame["quarantine"].isna()]


_TREATMENT = {
    "company": "not matched to any tenant: no write-back, no contact actions",
    "contact": "never written (its addresses still block a duplicate create)",
    "site": "gets no new contacts",
    "tenant mapping": "ignored by the matching",
}


def quarantined_records(
    companies: pd.DataFrame, contacts: pd.DataFrame, sites: pd.DataFrame, tenant_mappings: pd.DataFrame
) -> pd.DataFrame:
    """Every quarantined Halo record: kind, id, company, what is wrong and how the sync treats it."""
    parts = []
    for kind, frame, id_column in (
        ("company", companies, "company_id"),
        ("contact", contacts, "contact_id"),
        ("site", sites, "site_id"),
        ("tenant mapping", tenant_mappings, "tenant_id"),
    ):
        odd = frame.loc[frame["quarantine"].notna()]
        record_id = odd[id_column].astype("string")
        if kind == "tenant mapping":
            record_id = "tenant " + record_id + " → company " + odd["company_id"].astype("string")
        parts.append(
            pd.DataFrame(
                {
                    "kind": kind,
                    "record_id": record_id,
                    "company_id": odd["company_id"].astype("Int64"),
                    "problem": odd["quarantine"].astype("string"),
                    "treatment": _TREATMENT[kind],
                }
            )
        )
    found = pd.concat(parts, ignore_index=True)
    return found.astype({"kind": "string", "record_id": "string", "problem": "string", "treatment": "string"})[
        QUARANTINE_COLUMNS
    ]
