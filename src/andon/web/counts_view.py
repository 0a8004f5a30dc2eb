"""The counts section of the supervisor page: infeed, outfeed and waste per hour or shift of the
chosen asset (corrections included), and the count edits of the period with their state.

The figures are the ones ``GET /api/v1/assets/{path}/counts`` answers (the same buckets of
``MesQueries``, the same "edited" rule: an edit in force overlaps the bucket); edits are read from
the same repository as ``GET /api/v1/assets/{path}/counts/edits``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from andon.domain import CountEdit
from andon.server.mes_queries import Bucket, MesQueries
from andon.web.mes_view import PageQuery, local_text

__all__ = ["COUNT_BY", "CountRow", "EditRow", "counts_context"]

COUNT_BY = ("hour", "shift")
#: Newest buckets shown; a longer period says so.
MAX_BUCKETS = 300


@dataclass(frozen=True, slots=True)
class CountRow:
    label: str
    start_ms: int
    end_ms: int
    infeed: int
    outfeed: int
    waste: int
    edited: bool


@dataclass(frozen=True, slots=True)
class EditRow:
    id: int
    asset: str
    period: str
    mode: str
    requested: str
    change: str
    user: str
    comment: str
    created: str
    in_force: bool
    reverted: str


def _signed(value: int) -> str:
    return f"{value:+,}"


def _edit_row(edit: CountEdit, q: PageQuery) -> EditRow:
    names = ("infeed", "outfeed", "waste")
    requested = ", ".join(
        f"{n} {v:,}" for n, v in zip(names, edit.requested, strict=True) if v is not None
    )
    change = edit.change
    reverted = ""
    if edit.reverted_ms is not None:
        reverted = f"{local_text(edit.reverted_ms, q.zone)} by {edit.reverted_by or '?'}"
    return EditRow(
        edit.id, str(edit.asset),
        f"{local_text(edit.start_ms, q.zone)} \u2192 {local_text(edit.end_ms, q.zone)}",
        edit.mode.value, requested,
        f"infeed {_signed(change.infeed)}, outfeed {_signed(change.outfeed)}, "
        f"waste {_signed(change.waste)}",
        edit.username, edit.comment, local_text(edit.created_ms, q.zone), edit.active, reverted,
    )  # fmt: skip


def _row(bucket: Bucket, label: str, in_force: list[CountEdit]) -> CountRow:
    a = bucket.account
    edited = any(e.start_ms < bucket.end_ms and bucket.start_ms < e.end_ms for e in in_force)
    return CountRow(
        label, bucket.start_ms, bucket.end_ms, a.total_count, a.good_count, a.reject_count, edited
    )


def counts_context(mes: MesQueries, q: PageQuery, by: str) -> dict[str, Any]:
    by = by if by in COUNT_BY else "hour"
    leaves = mes.leaves(q.path)
    if not leaves:
        return {"count_by": by, "count_rows": [], "count_found": 0, "count_edits": [],
                "count_asset": ""}  # fmt: skip
    edits = mes.service.edit_repository.edits(leaves, q.start_ms, q.end_ms)
    in_force = [e for e in edits if e.active]
    if by == "shift":
        buckets = mes.by_shift(q.path, q.start_ms, q.end_ms)
        labels = [b.label for b in buckets]
    else:
        buckets = mes.hourly(q.path, q.start_ms, q.end_ms)
        labels = [local_text(b.start_ms, q.zone) for b in buckets]
    rows = [_row(b, label, in_force) for b, label in zip(buckets, labels, strict=True)]
    rows.reverse()  # newest first, like the other lists
    # The asset a correction goes to: the chosen one if it has counts, else its first cell.
    target = str(q.path) if q.path in leaves else str(leaves[0])
    return {
        "count_by": by,
        "count_rows": rows[:MAX_BUCKETS],
        "count_found": len(rows),
        "count_edits": [_edit_row(e, q) for e in edits],
        "count_asset": target,
    }
