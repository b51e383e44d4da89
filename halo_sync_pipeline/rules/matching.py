"""Which Halo company each Microsoft 365 customer tenant belongs to (`company_mappings`).

Each `match_by_*` rule returns candidate rows `tenant_id`, `company_id`, `evidence` (one per
tenant and active company it points at). `match_companies` applies them in order: the first rule
that yields exactly one active company wins. Then ownership: a company that Halo maps to a tenant
(rule 1) is that tenant's, so another tenant reaching it by rules 2–5 is a `conflict`, and so are
two unmapped tenants reaching one company (`resolve_conflicts`). A tenant whose Halo mapping points
at an inactive company stops there (`mapped_company_inactive`), never falling through to a sister.
"""

from __future__ import annotations

import json
import string

import pandas as pd

from halo_sync_pipeline.rules.normalise import email_domains, normalise_company_names, website_hosts
from halo_sync_pipeline.rules.quarantine import usable
from halo_sync_pipeline.schemas.plan import (
    COMPANY_MAPPING_COLUMNS,
    CONFLICT_METHOD,
    MATCHED_METHODS,
    WRITE_BACK_METHODS,
)
from halo_sync_pipeline.settings import SyncSettings

CANDIDATE_COLUMNS = ["tenant_id", "company_id", "evidence"]
MAPPING_COLUMNS = COMPANY_MAPPING_COLUMNS


def _quoted(values: pd.Series) -> pd.Series:
    return ('"' + values.astype("string") + '"').fillna("(blank)")


def _text(template: str, frame: pd.DataFrame) -> pd.Series:
    """`template` filled from `frame`'s columns, row by row but vectorised: `{column}` as text, `{column!q}`
    quoted (`(blank)` when missing). An unquoted missing value makes the row's text missing."""
    out = pd.Series("", index=frame.index, dtype="string")
    for literal, column, _spec, conversion in string.Formatter().parse(template):
        out = out + literal
        if column is not None:
            values = frame[column].astype("string")
            out = out + (_quoted(values) if conversion == "q" else values)
    return out


def _candidates(frame: pd.DataFrame, evidence: pd.Series) -> pd.DataFrame:
    out = frame.assign(evidence=evidence.astype("string"))[CANDIDATE_COLUMNS]
    return out.drop_duplicates(["tenant_id", "company_id"]).reset_index(drop=True)


def _active(companies: pd.DataFrame) -> pd.DataFrame:
    return companies.loc[~companies["inactive"]]


def match_by_tenant_id(tenants: pd.DataFrame, tenant_mappings: pd.DataFrame, companies: pd.DataFrame) -> pd.DataFrame:
    """Rule 1: active companies that Halo's Azure AD connection mappings already tie to the tenant id."""
    active = _active(companies)[["company_id"]]
    found = tenant_mappings.merge(tenants[["tenant_id"]], on="tenant_id").merge(active, on="company_id")
    evidence = _text("Halo Azure AD mapping of tenant {tenant_id} ({tenant_name!q}) to company {company_id} "
                     "{company_name!q}", found)  # fmt: skip
    return _candidates(found, evidence)


def match_by_name(tenants: pd.DataFrame, companies: pd.DataFrame) -> pd.DataFrame:
    """Rule 2: active companies whose name equals the tenant's display name (case, trim and
    inner whitespace ignored)."""
    active = _active(companies)
    names = active[["company_id", "name"]].assign(key=normalise_company_names(active["name"])).dropna(subset="key")
    keys = tenants[["tenant_id", "display_name"]].assign(key=normalise_company_names(tenants["display_name"]))
    found = keys.dropna(subset="key").merge(names, on="key")
    evidence = _text("company name {name!q} = tenant name {display_name!q} (case and spacing ignored)", found)
    return _candidates(found, evidence)


def _company_hosts(companies: pd.DataFrame) -> pd.DataFrame:
    active = _active(companies)
    hosts = active[["company_id", "website"]].assign(host=website_hosts(active["website"]))
    return hosts.dropna(subset="host")


def _website_evidence(found: pd.DataFrame, what: str) -> pd.Series:
    return _text(f"website {{website!q}} → host {{host}} = {what} {{host}}", found)


def match_by_default_domain_website(tenants: pd.DataFrame, companies: pd.DataFrame) -> pd.DataFrame:
    """Rule 3: active companies whose website host equals the tenant's default domain."""
    defaults = tenants[["tenant_id", "default_domain"]].dropna(subset="default_domain")
    found = defaults.merge(_company_hosts(companies), left_on="default_domain", right_on="host")
    return _candidates(found, _website_evidence(found, "default domain"))


def _verified_domains(domains: pd.DataFrame) -> pd.DataFrame:
    verified = domains.loc[domains["is_verified"], ["tenant_id", "domain"]]
    return verified.dropna(subset="domain").drop_duplicates()


def match_by_verified_domain_website(domains: pd.DataFrame, companies: pd.DataFrame) -> pd.DataFrame:
    """Rule 4: active companies whose website host is one of the tenant's verified domains."""
    found = _verified_domains(domains).merge(_company_hosts(companies), left_on="domain", right_on="host")
    return _candidates(found, _website_evidence(found, "verified domain"))


def match_by_contact_email_domain(
    domains: pd.DataFrame, contacts: pd.DataFrame, companies: pd.DataFrame
) -> pd.DataFrame:
    """Rule 5: active companies owning active contacts whose email domain is one of the tenant's
    verified domains (a contact proves current ownership; inactive ones may be history)."""
    active_ids = _active(companies)["company_id"]
    owned = contacts.loc[~contacts["inactive"] & contacts["company_id"].isin(active_ids), ["company_id", "email"]]
    owned = owned.assign(domain=email_domains(owned["email"])).dropna(subset="domain")
    per_domain = (
        owned.merge(_verified_domains(domains), on="domain")
        .groupby(["tenant_id", "company_id", "domain"], as_index=False)
        .size()
        .sort_values(["tenant_id", "company_id", "domain"])
    )
    per_domain["piece"] = per_domain["size"].astype("string") + " × @" + per_domain["domain"]
    found = per_domain.groupby(["tenant_id", "company_id"], as_index=False).agg(pieces=("piece", ", ".join))
    evidence = "active contacts with emails at the tenant's verified domains: " + found["pieces"].astype("string")
    return _candidates(found, evidence)


def excluded_tenants(tenants: pd.DataFrame, settings: SyncSettings) -> pd.Series:
    """Per tenant, the `exclude_tenants` entry (name or id, case-insensitive) that excludes it, or NA."""
    entries = {entry.strip().casefold(): entry for entry in settings.exclude_tenants}
    by_id = tenants["tenant_id"].str.strip().str.casefold().map(entries)
    by_name = tenants["display_name"].str.strip().str.casefold().map(entries)
    return by_id.fillna(by_name).astype("string")


def _all_candidates(
    tenants: pd.DataFrame,
    domains: pd.DataFrame,
    companies: pd.DataFrame,
    tenant_mappings: pd.DataFrame,
    contacts: pd.DataFrame,
) -> pd.DataFrame:
    rules = {
        "tenant_id": match_by_tenant_id(tenants, tenant_mappings, companies),
        "name": match_by_name(tenants, companies),
        "default_domain_website": match_by_default_domain_website(tenants, companies),
        "verified_domain_website": match_by_verified_domain_website(domains, companies),
        "contact_email_domain": match_by_contact_email_domain(domains, contacts, companies),
    }
    found = pd.concat([c.assign(method=m, rank=i) for i, (m, c) in enumerate(rules.items())], ignore_index=True)
    found["method"] = found["method"].astype("string")
    found["n_candidates"] = found.groupby(["tenant_id", "rank"])["company_id"].transform("size")
    names = companies.set_index("company_id")["name"]
    found["company_name"] = found["company_id"].map(names).astype("string")
    return found.sort_values(["tenant_id", "rank", "company_id"], ignore_index=True)


def _first_rule(found: pd.DataFrame) -> pd.DataFrame:
    """Rows of the lowest-ranked rule per tenant."""
    first_rank = found.groupby("tenant_id")["rank"].transform("min")
    return found.loc[found["rank"] == first_rank]


def _ambiguity_summary(several: pd.DataFrame) -> pd.DataFrame:
    """Per tenant: the candidates (`id:name; ...`) and evidence of the first rule that found several."""
    first = _first_rule(several)
    label = first["company_id"].astype("string") + ":" + first["company_name"].fillna("")
    detail = label + " (" + first["evidence"] + ")"
    return (
        first.assign(label=label, detail=detail)
        .groupby("tenant_id", as_index=False)
        .agg(ambiguous_method=("method", "first"), candidates=("label", "; ".join), detail=("detail", "; ".join))
        .astype({"candidates": "string", "detail": "string", "ambiguous_method": "string"})
    )


def _no_candidate_evidence(tenants: pd.DataFrame) -> pd.Series:
    return _text(
        "no active company matched: no Halo mapping of tenant {tenant_id}, no company named {tenant_name!q}, no "
        "website host equal to the default domain {default_domain} or another verified domain, no company with "
        "active contacts at a verified domain",
        tenants.assign(default_domain=tenants["default_domain"].fillna("(none)")),
    )


def tenants_mapped_to_inactive_companies(
    tenants: pd.DataFrame, tenant_mappings: pd.DataFrame, companies: pd.DataFrame
) -> pd.DataFrame:
    """Tenants whose Halo mappings point only at inactive companies: `tenant_id` and `evidence`.

    The mapping is explicit, so the tenant stops there (unmatched, `mapped_company_inactive`) instead of
    falling through to a weaker rule that could bind it to a sister company with the same name."""
    mapped = tenant_mappings.merge(tenants[["tenant_id"]], on="tenant_id").merge(
        companies[["company_id", "inactive", "name"]], on="company_id", how="left"
    )
    has_active = mapped.groupby("tenant_id")["inactive"].transform(lambda s: (~s.fillna(True).astype(bool)).any())
    dead = mapped.loc[~has_active.astype(bool) & mapped["inactive"].fillna(False).astype(bool)]
    label = _text("company {company_id} {name!q}", dead)
    found = dead.assign(label=label).groupby("tenant_id", as_index=False).agg(companies=("label", ", ".join))
    evidence = _text(
        "Halo maps the tenant to inactive {companies}; an explicit mapping is not overridden by a weaker rule: "
        "reactivate the company or map the tenant to the right company in Halo",
        found,
    )
    return pd.DataFrame({"tenant_id": found["tenant_id"], "evidence": evidence.astype("string")})


def resolve_conflicts(mappings: pd.DataFrame, tenant_mappings: pd.DataFrame) -> pd.DataFrame:
    """`mappings` with method `conflict` for every tenant whose rule 2–5 match is a company it may not take.

    A company that Halo maps to a tenant (rule 1) belongs to that tenant, whether or not it is in this
    run (a tenant whose contract ended keeps its mapping). Another tenant reaching it by rules 2–5 is a
    conflict; so are two tenants that reach one company only by rules 2–5. Several tenants mapped to one
    company by rule 1 stay allowed: the MSP said so in Halo. A conflict writes nothing (no write-back,
    no contact actions); the fix is to map the tenant in Halo. `candidates` names the other tenants."""
    out = mappings.copy()
    weak = out["method"].isin(WRITE_BACK_METHODS)
    owners = tenant_mappings.drop_duplicates(["company_id", "tenant_id"])
    owner_label = _text("tenant {tenant_id} {tenant_name!q} (Halo Azure AD mapping)", owners)
    owned_by = owners.assign(label=owner_label).groupby("company_id")["label"].agg("; ".join)
    weak_rows = out.loc[weak]
    shared_label = _text("tenant {tenant_id} {tenant_name!q} (by {method})", weak_rows)
    shared_by = weak_rows.assign(label=shared_label).groupby("company_id")["label"].agg(list)

    conflict_with = pd.Series(pd.NA, index=out.index, dtype="string")
    notes = pd.Series(pd.NA, index=out.index, dtype="string")
    for index, row in weak_rows.iterrows():
        company_id = int(row["company_id"])
        me = f"tenant {row['tenant_id']}"
        others = [label for label in shared_by.get(company_id, []) if not label.startswith(me + " ")]
        if company_id in owned_by.index:
            conflict_with[index] = owned_by[company_id]
            notes[index] = (
                f'company {company_id} "{row["company_name"]}" belongs to {owned_by[company_id]}; this tenant reached it '
                f"by rule {row['method']} ({row['evidence']}). Nothing is written for this tenant: map it in Halo to "
                "its company"
            )
        elif others:
            conflict_with[index] = "; ".join(others)
            notes[index] = (
                f'company {company_id} "{row["company_name"]}" is reached by several tenants that Halo does not map: '
                f"this one by rule {row['method']} ({row['evidence']}) and {'; '.join(others)}. Nothing is written for "
                "them: map each tenant in Halo to its company"
            )
    conflicted = notes.notna()
    out["method"] = out["method"].mask(conflicted, CONFLICT_METHOD)
    out["candidates"] = out["candidates"].mask(conflicted, conflict_with)
    out["evidence"] = out["evidence"].mask(conflicted, notes)
    return out


def _require_unique(frame: pd.DataFrame, column: str, asset: str) -> None:
    """ValueError naming the keys `frame` lists twice. Their schema check fails on them and blocks the plan in
    that run, but a later run that materialises only the plan reads the stored frame again."""
    repeated = frame.loc[frame[column].duplicated(), column].unique()
    if len(repeated):
        shown = ", ".join(repr(str(value)) for value in repeated[:5])
        raise ValueError(
            f"{asset} lists {column} {shown}{' …' if len(repeated) > 5 else ''} more than once, which its schema "
            "check refuses; run the whole job so the sources are read and checked again"
        )


def match_companies(
    tenants: pd.DataFrame,
    domains: pd.DataFrame,
    companies: pd.DataFrame,
    tenant_mappings: pd.DataFrame,
    contacts: pd.DataFrame,
    settings: SyncSettings,
) -> pd.DataFrame:
    """`company_mappings`: one row per tenant, matched by the first rule yielding exactly one
    active company, then `resolve_conflicts`; `unmatched` (`no_candidate`, `ambiguous`,
    `mapped_company_inactive`, `company_quarantined`) or `excluded` otherwise.

    Quarantined tenant mappings are ignored. A quarantined company can still be a rule's pick (so the
    tenant does not fall through to another company) but the tenant is then left unmatched."""
    _require_unique(tenants, "tenant_id", "m365_tenants")
    _require_unique(companies, "company_id", "halo_companies")
    tenant_mappings = usable(tenant_mappings)
    out = tenants[["tenant_id", "display_name", "default_domain", "status"]].rename(
        columns={"display_name": "tenant_name", "status": "users_status"}
    )
    excluded_by = excluded_tenants(tenants, settings)
    dead_mapped = tenants_mapped_to_inactive_companies(tenants, tenant_mappings, companies).set_index("tenant_id")
    considered = tenants.loc[excluded_by.isna() & ~tenants["tenant_id"].isin(dead_mapped.index), "tenant_id"]
    found = _all_candidates(tenants, domains, companies, tenant_mappings, contacts)
    found = found.loc[found["tenant_id"].isin(considered)]

    winners = _first_rule(found.loc[found["n_candidates"] == 1]).set_index("tenant_id")
    several = _ambiguity_summary(found.loc[found["n_candidates"] > 1]).set_index("tenant_id")
    key = out["tenant_id"]
    won = key.isin(winners.index)
    ambiguous = ~won & key.isin(several.index)
    dead = key.isin(dead_mapped.index) & excluded_by.isna()

    out["method"] = pd.Series("unmatched", index=out.index, dtype="string")
    out["method"] = out["method"].mask(won, winners["method"].reindex(key).to_numpy())
    out["method"] = out["method"].mask(excluded_by.notna(), "excluded")
    out["reason"] = pd.Series(pd.NA, index=out.index, dtype="string")
    out["reason"] = (
        out["reason"]
        .mask(out["method"] == "unmatched", "no_candidate")
        .mask(ambiguous, "ambiguous")
        .mask(dead, "mapped_company_inactive")
    )
    out["company_id"] = pd.array(winners["company_id"].reindex(key), dtype="Int64")
    out["company_name"] = winners["company_name"].reindex(key).to_numpy()
    out["company_name"] = out["company_name"].astype("string")
    out["candidates"] = several["candidates"].reindex(key).where(ambiguous.to_numpy()).to_numpy()
    out["candidates"] = out["candidates"].astype("string")

    won_evidence = winners["evidence"].reindex(key).to_numpy()
    # An earlier rule that found several companies is worth knowing even when a later one decided.
    ambiguity_note = (
        ("; earlier rule " + several["ambiguous_method"] + " found several: " + several["candidates"])
        .reindex(key)
        .fillna("")
        .to_numpy()
    )
    ambiguous_evidence = (
        (
            "rule "
            + several["ambiguous_method"]
            + " found several active companies and no later rule found exactly one: "
            + several["detail"]
        )
        .reindex(key)
        .to_numpy()
    )
    evidence = pd.Series(_no_candidate_evidence(out).to_numpy(), index=out.index, dtype="string")
    evidence = evidence.mask(ambiguous, pd.Series(ambiguous_evidence, index=out.index, dtype="string"))
    evidence = evidence.mask(won, pd.Series(won_evidence, index=out.index, dtype="string") + ambiguity_note)
    evidence = evidence.mask(dead, dead_mapped["evidence"].reindex(key).to_numpy())
    excluded_note = "tenant excluded by settings.exclude_tenants entry " + _quoted(excluded_by)
    out["evidence"] = evidence.mask(excluded_by.notna(), excluded_note)
    out = resolve_conflicts(out, tenant_mappings)
    out = _leave_quarantined_companies(out, companies)
    out["company_update"] = plan_company_update(out, tenant_mappings, settings)
    return out[MAPPING_COLUMNS].reset_index(drop=True)


def _leave_quarantined_companies(mappings: pd.DataFrame, companies: pd.DataFrame) -> pd.DataFrame:
    """Tenants matched to a quarantined company are left unmatched (`company_quarantined`): which copy
    of a duplicated company is right, or what a nameless one is, cannot be told."""
    problems = companies.set_index("company_id")["quarantine"].dropna()
    hit = mappings["method"].isin(MATCHED_METHODS) & mappings["company_id"].isin(problems.index)
    if not hit.any():
        return mappings
    out = mappings.copy()
    problem = out["company_id"].map(problems).astype("string")
    note = (
        "; but company "
        + out["company_id"].astype("string")
        + " is quarantined ("
        + problem
        + "): nothing is written for this tenant until the company is fixed in Halo"
    )
    out["evidence"] = out["evidence"].mask(hit, out["evidence"] + note)
    out["method"] = out["method"].mask(hit, "unmatched")
    out["reason"] = out["reason"].mask(hit, "company_quarantined")
    out["company_id"] = out["company_id"].mask(hit)
    out["company_name"] = out["company_name"].mask(hit)
    return out


def plan_company_update(
    company_mappings: pd.DataFrame, tenant_mappings: pd.DataFrame, settings: SyncSettings
) -> pd.Series:
    """Per mapping row, the JSON of the POST /api/Client element adding the tenant to the company's
    `azure_tenants` (NA when no write is planned).

    Only for matches by rules 2–5 (never a conflict) of tenants whose users loaded (a tenant that failed
    gets no writes at all), when `set_halo_tenant_ids` is on; never for unmatched or excluded tenants
    (seed bug: it wrote a null company). The planned element lists the new entry only; the apply reads
    the company's current entries and sends them all, as Halo returned them, plus this one, with the
    Microsoft Partner connection as `details_id` (seed bug: it replaced the list).
    """
    updates = pd.Series(pd.NA, index=company_mappings.index, dtype="string")
    if not settings.set_halo_tenant_ids:
        return updates
    known_pairs = set(zip(tenant_mappings["company_id"], tenant_mappings["tenant_id"]))
    writes = company_mappings.loc[
        company_mappings["method"].isin(WRITE_BACK_METHODS)
        & company_mappings["company_id"].notna()
        & (company_mappings["users_status"] == "loaded").fillna(False)
    ]
    for index, company_id, tenant_id, tenant_name in zip(
        writes.index, writes["company_id"], writes["tenant_id"], writes["tenant_name"]
    ):
        if (int(company_id), tenant_id) not in known_pairs:
            updates.loc[index] = json.dumps(
                {"id": int(company_id), "azure_tenants": [_tenant_entry(tenant_id, tenant_name)]}
            )
    return updates


def _tenant_entry(tenant_id: str, tenant_name: object) -> dict[str, str | None]:
    return {"azure_tenant_id": tenant_id, "azure_tenant_name": None if pd.isna(tenant_name) else str(tenant_name)}
