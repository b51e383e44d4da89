"""One row per tenant telling its whole story (`tenant_review`): how it loaded, which company it maps to
and why, what will be written, what is held and why, and what needs a person.

It is the first place to look when a match or an action looks wrong: everything the other plan frames
say about one tenant, on one line, problems first.
"""

from __future__ import annotations

import json

import pandas as pd

from halo_sync_pipeline.rules.contacts import DEACTIVATION_OFF_HOLD
from halo_sync_pipeline.schemas.plan import CONFLICT_METHOD, CONTACT_ACTIONS, TENANT_REVIEW_COLUMNS, Action

# action -> column counting that tenant's planned rows of it (held ones included)
ACTION_COUNT_COLUMNS = {action: action if action == Action.AMBIGUOUS else f"{action}s" for action in CONTACT_ACTIONS}
# What a person reads first comes first (the UI's table is wider than a screen): the model's column order.
REVIEW_COLUMNS = TENANT_REVIEW_COLUMNS


def _count_text(counts: pd.Series) -> str:
    return "; ".join(f"{n} × {text}" for text, n in counts.items())


def hold_summary(contact_changes: pd.DataFrame) -> pd.DataFrame:
    """Per tenant: `held` (count) and `hold_reasons` ("11 × deactivate: guard: …; 2 × create: no site: …")."""
    held = contact_changes.loc[contact_changes["held"]]
    labelled = held["action"] + ": " + held["hold_reason"].fillna("(no reason)")
    grouped = labelled.groupby(held["tenant_id"])
    return pd.DataFrame(
        {
            "held": grouped.size(),
            "hold_reasons": grouped.agg(lambda s: _count_text(s.value_counts(sort=True))),
        }
    )


def _write_back_text(company_mappings: pd.DataFrame) -> pd.Series:
    """The planned tenant-id write-back in words (NA when none)."""
    texts = []
    for update, company_id, company_name in zip(
        company_mappings["company_update"], company_mappings["company_id"], company_mappings["company_name"]
    ):
        if pd.isna(update):
            texts.append(pd.NA)
            continue
        added = [entry["azure_tenant_id"] for entry in json.loads(update).get("azure_tenants", [])]
        texts.append(
            f'add tenant {", ".join(added)} to the Azure AD mappings of company {company_id} "{company_name}" '
            "(its existing entries kept)"
        )
    return pd.Series(texts, index=company_mappings.index, dtype="string")


def _warnings(review: pd.DataFrame) -> pd.Series:
    """What needs a person, per tenant (NA when nothing does)."""
    found = []
    for status, method, reason, held in zip(review["load_status"], review["method"], review["reason"], review["held"]):
        notes = []
        if status == "failed":
            notes.append("users failed to load (see load_error): nothing is written for this tenant")
        if method == CONFLICT_METHOD:
            notes.append("conflict: nothing is written for this tenant")
        elif method == "unmatched":
            notes.append(f"unmatched ({reason}): nothing is written for this tenant")
        if held:
            notes.append(f"{held} action(s) held")
        found.append(" | ".join(notes) if notes else pd.NA)
    return pd.Series(found, index=review.index, dtype="string")


def tenant_review(
    company_mappings: pd.DataFrame, contact_changes: pd.DataFrame, m365_tenants: pd.DataFrame
) -> pd.DataFrame:
    """`tenant_review`: one row per tenant; those that need a person (failed to load, conflict, unmatched,
    held actions) first, then by name."""
    review = company_mappings[
        ["tenant_name", "tenant_id", "method", "reason", "company_id", "company_name", "evidence", "candidates"]
    ].copy()
    loads = m365_tenants.set_index("tenant_id")
    review["load_status"] = review["tenant_id"].map(loads["status"]).astype("string")
    review["load_error"] = review["tenant_id"].map(loads["error"]).astype("string")
    review["write_back"] = _write_back_text(company_mappings)
    counts = contact_changes.groupby(["tenant_id", "action"]).size().unstack(fill_value=0)
    for action, column in ACTION_COUNT_COLUMNS.items():
        found = counts[action] if action in counts else pd.Series(dtype="int64")
        review[column] = review["tenant_id"].map(found).fillna(0).astype("int64")
    holds = hold_summary(contact_changes)
    review["held"] = review["tenant_id"].map(holds["held"]).fillna(0).astype("int64")
    review["hold_reasons"] = review["tenant_id"].map(holds["hold_reasons"]).astype("string")
    review["warnings"] = _warnings(review)
    review["needs_review"] = review["warnings"].notna()
    review = review.sort_values(["needs_review", "tenant_name", "tenant_id"], ascending=[False, True, True])
    return review[REVIEW_COLUMNS].reset_index(drop=True)


def review_summary(review: pd.DataFrame, contact_changes: pd.DataFrame, quarantined_records: int) -> dict[str, object]:
    """What an alert needs to say about a plan, by tenant name (never GUIDs alone)."""
    name = review["tenant_name"].fillna(review["tenant_id"])
    # Deactivations held because the setting is off are a choice, not news: the report lists them.
    held = contact_changes.loc[
        contact_changes["held"]
        & (contact_changes["action"] == Action.DEACTIVATE)
        & ~contact_changes["hold_reason"].fillna("").str.startswith(DEACTIVATION_OFF_HOLD)
    ]
    per_tenant = held.groupby("tenant_id").size()
    names = dict(zip(review["tenant_id"], name))
    return {
        "held_deactivations": [{"tenant": names.get(t, t), "count": int(n)} for t, n in per_tenant.items()],
        "conflicts": name[review["method"] == CONFLICT_METHOD].tolist(),
        "unmatched": name[review["method"] == "unmatched"].tolist(),
        "failed_to_load": name[review["load_status"] == "failed"].tolist(),
        "quarantined_records": int(quarantined_records),
    }


def review_stories(review: pd.DataFrame, limit: int) -> str:
    """Markdown, one short paragraph per tenant that needs review (the first `limit`, problems first):
    name, outcome, why, what is held and why. Reads in a narrow column where a wide table does not."""
    needing = review.loc[review["needs_review"]].head(limit)
    if needing.empty:
        return "_No tenant needs review._"
    paragraphs = []
    for row in needing.itertuples(index=False):
        outcome = row.method + (f" ({row.reason})" if not pd.isna(row.reason) else "")
        company = "" if pd.isna(row.company_name) else f', company {row.company_id} "{row.company_name}"'
        lines = [
            f"**{_md(row.tenant_name)}** — {_md(outcome)}{_md(company)}: {_md(row.warnings)}",
            f"Why: {_md(row.evidence)}",
        ]
        if not pd.isna(row.load_error):
            lines.append(f"Load error: {_md(row.load_error)}")
        if not pd.isna(row.hold_reasons):
            lines.append(f"Held: {_md(row.hold_reasons)}")
        paragraphs.append("  \n".join(lines))
    more = len(review.loc[review["needs_review"]]) - len(needing)
    return "\n\n".join(paragraphs) + (f"\n\n_{more} more in the table and the CSV._" if more > 0 else "")


def _md(value: object) -> str:
    # Markdown must not turn an evidence text into formatting.
    text = "" if pd.isna(value) else str(value)
    for special in ("\\", "*", "_", "`", "[", "]", "<", ">", "#", "|"):
        text = text.replace(special, "\\" + special)
    return text.replace("\n", " ")
