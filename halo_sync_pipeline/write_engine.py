"""The write engine: turns the plan into batched Halo upserts and records what happened to each action.

No Dagster here: the `applied_changes` asset gives it a `write_batch` callable (the Halo client's
upsert). Batches are array POSTs. A batch that still fails after the client's own retries is split in
halves until the bad record fails alone, so one bad record never blocks the rest of the plan. A rate limit
that outlasts the retries (429) is not a bad record: nothing is split, and nothing more is sent; nor is
anything once Halo has failed several writes in a row with its own trouble (5xx, lost connections).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Literal, TypeVar

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from halo_sync_pipeline.schemas.plan import APPLIED_CHANGE_COLUMNS, CONTACT_CHANGE_COLUMNS, Action, Outcome

# endpoint ("Users" | "Client"), bodies -> saved records in the same order
Endpoint = Literal["Users", "Client"]
WriteBatch = Callable[[Endpoint, list[dict[str, Any]]], list[dict[str, Any]]]
# a company write-back's planned body -> the body to send (None: Halo already has it); raising fails it alone
PrepareWriteBack = Callable[[dict[str, Any]], dict[str, Any] | None]

# Writes that other writes may depend on go first: a company must own the tenant before its contacts change.
ACTION_ORDER = (Action.SET_TENANT_ID, Action.PAIR, Action.REACTIVATE, Action.UPDATE, Action.CREATE, Action.DEACTIVATE)

# `applied_changes` is `contact_changes` (and company write-backs) plus outcome, error and halo_id.
PLAN_COLUMNS = CONTACT_CHANGE_COLUMNS
APPLIED_COLUMNS = APPLIED_CHANGE_COLUMNS

# One write's result: its outcome, the error (or NA) and the Halo id (or NA).
Result = tuple[str, Any, Any]
_Item = TypeVar("_Item")
_Answer = TypeVar("_Answer")


_NARROWS = (
    " Only narrows this run: what is planned at all is decided by the sync_settings resource; an action is "
    "written only when both allow it."
)


class ApplyToggles(BaseModel):
    """Which kinds of *planned* action an apply run may write (all on by default).

    They only narrow a run: the plan settings (`sync_settings.create_contacts`, `deactivate_contacts`,
    `set_halo_tenant_ids`) decide what is planned at all, so an action is written only when both are on.
    The names say so (`allow_*`), unlike the seed, where one switch name meant both. The apply's run config
    (`ApplyConfig`) inherits these fields, defaults and descriptions."""

    model_config = ConfigDict(frozen=True)

    allow_creates: bool = Field(default=True, description="Write the planned contact creates." + _NARROWS)
    allow_pairs: bool = Field(
        default=True, description="Write the planned pairings (azureoid set on an existing contact)." + _NARROWS
    )
    allow_reactivations: bool = Field(default=True, description="Write the planned reactivations." + _NARROWS)
    allow_updates: bool = Field(default=True, description="Write the planned field updates." + _NARROWS)
    allow_deactivations: bool = Field(default=True, description="Write the planned deactivations." + _NARROWS)
    allow_tenant_id_writes: bool = Field(
        default=True, description="Write the planned tenant-id write-backs to companies." + _NARROWS
    )
    tenant_id_writes_only: bool = Field(
        default=False,
        description="Write only the tenant-id write-backs, no contact change (the seed's $CheckMatchesOnly).",
    )

    def allows(self, action: str) -> bool:
        if self.tenant_id_writes_only:
            return action == Action.SET_TENANT_ID and self.allow_tenant_id_writes
        allowed: dict[str, bool] = {
            Action.SET_TENANT_ID: self.allow_tenant_id_writes,
            Action.CREATE: self.allow_creates,
            Action.PAIR: self.allow_pairs,
            Action.REACTIVATE: self.allow_reactivations,
            Action.UPDATE: self.allow_updates,
            Action.DEACTIVATE: self.allow_deactivations,
        }
        return allowed.get(action, False)


def planned_writes(company_mappings: pd.DataFrame, contact_changes: pd.DataFrame) -> pd.DataFrame:
    """One row per planned action (company write-backs and contact changes), in write order."""
    companies = company_mappings[company_mappings["company_update"].notna()]
    company_rows = pd.DataFrame(
        {
            "tenant_id": companies["tenant_id"],
            "tenant_name": companies["tenant_name"],
            "company_id": companies["company_id"].astype("int64"),
            "company_name": companies["company_name"],
            "action": Action.SET_TENANT_ID.value,
            "held": False,
            "body": companies["company_update"],
            "evidence": companies["evidence"],
        }
    )
    writes = pd.concat([company_rows, contact_changes[PLAN_COLUMNS]], ignore_index=True)[PLAN_COLUMNS]
    writes = writes.astype({"company_id": "int64", "contact_id": "Int64", "held": bool})
    text_columns = [c for c in PLAN_COLUMNS if c not in ("company_id", "contact_id", "held")]
    writes[text_columns] = writes[text_columns].astype("string")
    order = writes["action"].map({action: i for i, action in enumerate(ACTION_ORDER)}).fillna(len(ACTION_ORDER))
    return writes.iloc[order.argsort(kind="stable")].reset_index(drop=True)


def partner_connection_id(connections: Sequence[dict[str, Any]]) -> int:
    """The id of Halo's one Microsoft Partner (type 2) Azure AD connection, which new tenant entries
    belong to (`details_id`). None or several: ValueError, and no write-back is guessed."""
    ids = sorted({int(c["id"]) for c in connections if isinstance(c, dict) and c.get("id") is not None})
    if len(ids) != 1:
        found = "none" if not ids else "several (ids " + ", ".join(map(str, ids)) + ")"
        raise ValueError(
            f"Halo has {found} Microsoft Partner Azure AD connections; the tenant id write-back needs exactly one"
        )
    return ids[0]


def merge_tenant_entries(current: dict[str, Any], planned: dict[str, Any], details_id: int) -> dict[str, Any] | None:
    """The POST /api/Client element for a tenant-id write-back: every `azure_tenants` entry the company
    has now, exactly as Halo returned it (with its `id` and `details_id`: Halo removes an entry missing
    from the list and updates one with an id), plus each planned tenant it lacks, under the partner
    connection `details_id`. None when the company already has every planned tenant.

    A tenant list it cannot read whole (not a list, or an entry that is not an object) is a ValueError and
    nothing is sent: the POST replaces Halo's list, so an entry left out of it would be deleted."""
    if str(current.get("id")) != str(planned["id"]):  # another company's entries must never be written here
        raise ValueError(f"company {planned['id']}: Halo answered company {current.get('id')!r}; nothing is sent")
    current_entries = current.get("azure_tenants")
    existing = [] if current_entries is None else current_entries
    if not isinstance(existing, list) or not all(isinstance(entry, dict) for entry in existing):
        raise ValueError(
            f"company {planned['id']}: Halo's azure_tenants is not a list of objects ({_shape(current_entries)}); "
            "the write-back would drop what it cannot read, so it is not sent"
        )
    known = {str(entry.get("azure_tenant_id") or "").strip().lower() for entry in existing}
    added = [
        {
            "azure_tenant_id": entry["azure_tenant_id"],
            "azure_tenant_name": entry.get("azure_tenant_name"),
            "details_id": details_id,
        }
        for entry in planned.get("azure_tenants") or []
        if str(entry["azure_tenant_id"]).strip().lower() not in known
    ]
    if not added:
        return None
    return {"id": planned["id"], "azure_tenants": [*existing, *added]}


def _shape(value: Any) -> str:
    """What a JSON value is, without its content (a tenant list's names stay out of error texts)."""
    if isinstance(value, list):
        return "a list holding " + ", ".join(sorted({type(item).__name__ for item in value}))
    return type(value).__name__


def _endpoint(action: str) -> Endpoint:
    return "Client" if action == Action.SET_TENANT_ID else "Users"


def _safe_to_resend(exc: Exception, bodies: Sequence[dict[str, Any]]) -> bool:
    """May the records of a failed batch be sent again (in halves) without risking a duplicate?

    Updates carry the contact's id, so sending one twice is harmless. Creates are resent only when
    Halo answered with a refusal (4xx: nothing written). After a dropped connection or a 5xx the
    creates may have landed; they fail here instead, and the next run, which re-reads Halo, finds
    them linked by azureoid or creates them then.
    """
    if all(body.get("id") for body in bodies):
        return True
    status = getattr(exc, "status_code", None)
    return status is not None and 400 <= status < 500


RATE_LIMITED = 429


def _rate_limited(exc: Exception) -> bool:
    """A 429 that outlasted the client's retries: Halo's window is closed, the records were not refused."""
    return getattr(exc, "status_code", None) == RATE_LIMITED


class _Breaker:
    """Stops the apply sending when Halo cannot take writes, so the writes not yet sent fail, named, and the
    next run, which re-reads Halo first, writes them.

    - A rate limit (429) that outlasted a write's retries: every later write would meet the same closed
      window, and halving a batch would only multiply the requests against it.
    - `trouble_limit` writes in a row that failed with Halo's own trouble (5xx, a lost connection) after the
      client's retries, each of which already took up to the retry deadline. Halving a batch to find a record
      Halo chokes on fails once per level on the way down, so the limit leaves room for that; in an outage
      the halves of every batch would otherwise be sent for hours.
    Any answer that is not Halo's trouble (a success, a refusal) starts the count again."""

    def __init__(self, trouble_limit: int) -> None:
        self.trouble_limit = trouble_limit
        self.reason: str | None = None
        self._in_a_row = 0
        self._lock = threading.Lock()

    def answered(self) -> None:
        with self._lock:
            self._in_a_row = 0

    def failed(self, exc: Exception, error: str) -> None:
        status = getattr(exc, "status_code", None)
        with self._lock:
            if _rate_limited(exc):
                self.reason = self.reason or f"Halo's rate limit: {error}"
            elif status is None or status >= 500:
                self._in_a_row += 1
                if self._in_a_row >= self.trouble_limit:
                    self.reason = self.reason or f"Halo failed {self._in_a_row} writes in a row; the last: {error}"
            else:
                self._in_a_row = 0


def _write_isolating(
    write_batch: WriteBatch,
    endpoint: Endpoint,
    items: Sequence[tuple[int, dict[str, Any]]],
    results: dict[int, Result],
    breaker: _Breaker,
) -> None:
    """Write `items` (row index, body); on a refusal split until each bad record fails alone."""
    if breaker.reason is not None:
        for index, _ in items:
            results[index] = (Outcome.FAILED, f"not sent, {breaker.reason}"[:500], pd.NA)
        return
    bodies = [body for _, body in items]
    try:
        saved = write_batch(endpoint, bodies)
    except Exception as exc:  # noqa: BLE001 - any failure of a batch is isolated or reported per record
        error = _error_text(exc)
        breaker.failed(exc, error)
        if _rate_limited(exc):  # not a refusal of these records: nothing to isolate
            for index, _ in items:
                results[index] = (Outcome.FAILED, error, pd.NA)
            return
        if len(items) == 1 or not _safe_to_resend(exc, bodies):
            if len(items) > 1:
                error = f"outcome unknown, not resent (a re-run re-reads Halo first): {error}"
            for index, _ in items:
                results[index] = (Outcome.FAILED, error, pd.NA)
            return
        middle = len(items) // 2
        _write_isolating(write_batch, endpoint, items[:middle], results, breaker)
        _write_isolating(write_batch, endpoint, items[middle:], results, breaker)
        return
    breaker.answered()
    if len(saved) != len(items):
        for index, _ in items:
            results[index] = (Outcome.FAILED, f"Halo answered {len(saved)} records for {len(items)} sent", pd.NA)
        return
    for (index, body), record in zip(items, saved, strict=True):
        halo_id = record.get("id") if isinstance(record, dict) else None
        results[index] = (Outcome.APPLIED, pd.NA, halo_id if halo_id is not None else body.get("id", pd.NA))


def _error_text(exc: Exception) -> str:
    # Client errors carry status and Halo's message only; never the request (which may hold a token).
    return f"{type(exc).__name__}: {exc}"[:500]


def _each(call: Callable[[_Item], _Answer], items: Sequence[_Item], connections: int) -> list[_Answer]:
    """`call` over `items`, answers in the same order, up to `connections` at a time: each call is a
    Halo request (or a few), so threads overlap the waits."""
    if connections <= 1 or len(items) <= 1:
        return [call(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(connections, len(items)), thread_name_prefix="halo-write") as pool:
        return list(pool.map(call, items))


def _prepared(
    prepare: PrepareWriteBack | None, bodies: list[dict[str, Any]], connections: int
) -> list[dict[str, Any] | None | Exception]:
    """Each planned body as it is to be sent (None: Halo has it; an exception: its preparation failed),
    in the same order. A write-back's preparation reads its own company (one write-back per company,
    which the company_mappings integrity check holds), so several overlap."""
    if prepare is None:
        return list(bodies)

    def one(body: dict[str, Any]) -> dict[str, Any] | None | Exception:
        try:
            return prepare(body)
        except Exception as exc:  # noqa: BLE001 - the caller reports it on this action alone
            return exc

    return _each(one, bodies, connections)


def apply_writes(
    writes: pd.DataFrame,
    write_batch: WriteBatch,
    *,
    toggles: ApplyToggles = ApplyToggles(),
    dry_run: bool = True,
    batch_size: int = 100,
    prepare_write_back: PrepareWriteBack | None = None,
    connections: int = 1,
) -> pd.DataFrame:
    """Write every allowed, non-held row of `writes`; return them all with outcome, error and halo_id.

    `prepare_write_back` turns a company write-back's planned body into the one sent (it reads Halo's
    current entries first); if it fails, that write-back fails alone. Up to `connections` preparations,
    or batches of one action, are in flight at once; an action starts only when the one before it in
    ACTION_ORDER is done. Once a write gives up on Halo's rate limit, or several in a row on Halo's own
    trouble (`_Breaker`), the writes not yet sent fail unsent."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if connections < 1:
        raise ValueError(f"connections must be >= 1, got {connections}")
    results: dict[int, Result] = {}
    # Room to halve a batch down to the one record Halo chokes on (one failure per level), plus two.
    breaker = _Breaker(trouble_limit=max(3, math.ceil(math.log2(batch_size)) + 2))
    # Plain column iteration: DataFrame.iterrows builds a Series per row (4 s of a 50k-row apply).
    for index, held, planned, action in zip(
        writes.index, writes["held"], writes["body"], writes["action"], strict=True
    ):
        if held or pd.isna(planned):
            results[index] = (Outcome.HELD, pd.NA, pd.NA)
        elif not toggles.allows(action):
            results[index] = (Outcome.SKIPPED, pd.NA, pd.NA)
        elif dry_run:
            results[index] = (Outcome.DRY_RUN, pd.NA, pd.NA)
    for action in ACTION_ORDER:
        of_action = writes[writes["action"] == action]
        todo = [
            (index, json.loads(planned), company_id)
            for index, planned, company_id in zip(
                of_action.index, of_action["body"], of_action["company_id"], strict=True
            )
            if index not in results
        ]
        pending = []
        prepare = prepare_write_back if action == Action.SET_TENANT_ID else None
        prepared = _prepared(prepare, [body for _, body, _ in todo], connections)
        for (index, _, company_id), body in zip(todo, prepared, strict=True):
            if isinstance(body, Exception):  # reported on this action; the others go on
                results[index] = (Outcome.FAILED, _error_text(body), pd.NA)
            elif body is None:  # Halo has it already (a re-run, or someone did it by hand)
                results[index] = (Outcome.APPLIED, pd.NA, company_id if action == Action.SET_TENANT_ID else pd.NA)
            else:
                pending.append((index, body))
        batches = [pending[start : start + batch_size] for start in range(0, len(pending), batch_size)]
        # Each batch writes its own rows' results; the batches of one action depend on none of each other.
        _each(
            partial(_write_isolating, write_batch, _endpoint(action), results=results, breaker=breaker),
            batches,
            connections,
        )
    applied = writes.copy()
    applied["outcome"] = pd.array([str(results[i][0]) for i in applied.index], dtype="string")
    applied["error"] = pd.array([results[i][1] for i in applied.index], dtype="string")
    applied["halo_id"] = pd.array([results[i][2] for i in applied.index], dtype="Int64")
    return applied[APPLIED_COLUMNS]
