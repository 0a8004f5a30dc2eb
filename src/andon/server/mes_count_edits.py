"""``CountEdits``: a supervisor's corrections of infeed, outfeed and waste over a period.

The rules are the domain's (``andon.domain.count_edits``); this applies them to the stored
counts. An edit reads the figures of each segment of its period (derived counts plus the
corrections in force, summed by the database: ``MesAggregates.figures``) inside the service's
``exclusive`` section, plans its corrections, and stores the edit, its corrections, the rollup
increments they cause and the audit entry in one transaction of their own
(``MesService.store_edit``), answered once it is committed. From then on every reader of
counts sees them: the hour and shift rollups (OEE, performance, quality, trends, the UNS
mirror), the edges of a period (``MesQueries``), exports, and run changes (which re-rate
corrections with the counts). A revert takes the corrections out
the same way, unless that would leave a segment below zero (a later edit built on them).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence

from andon.domain import (
    AssetPath,
    CountEdit,
    CountEditError,
    CountEditMode,
    CountRecord,
    CountTriple,
    DomainError,
    edit_boundaries,
    plan_corrections,
    resolve_change,
)
from andon.server._mes_derive import increments
from andon.server.mes_service import MesService
from andon.storage.audit import Transaction
from andon.storage.mes import MesChanges

__all__ = ["CountEditHook", "CountEdits", "segment_figures"]

#: Called inside the transaction that stores a count edit or its revert, with (before, after).
CountEditHook = Callable[[Transaction, CountEdit | None, CountEdit], None]


def segment_figures(bounds: Sequence[int], records: Iterable[CountRecord]) -> list[CountTriple]:
    """What the records seen in each segment [bounds[i], bounds[i+1]) add up to."""
    good = [0] * (len(bounds) - 1)
    reject = [0] * (len(bounds) - 1)
    for record in records:
        i = bisect_right(bounds, record.ts_ms) - 1
        if 0 <= i < len(good):
            good[i] += record.total - record.reject
            reject[i] += record.reject
    return [CountTriple.of(g, r) for g, r in zip(good, reject, strict=True)]


class CountEdits:
    def __init__(self, service: MesService) -> None:
        self.service = service
        self.repository = service.edit_repository

    def figures(self, asset: AssetPath, bounds: Sequence[int]) -> list[CountTriple]:
        """The figures of each segment now: derived counts plus the corrections in force."""
        return [CountTriple.of(g, r) for g, r in self.service.aggregates.figures(asset, bounds)]

    def _bounds(self, asset: AssetPath, start_ms: int, end_ms: int) -> list[int]:
        return edit_boundaries(
            start_ms, end_ms, self.service.zone_for(asset), self.service.calendar_for(asset)
        )

    def add(
        self,
        asset: AssetPath,
        start_ms: int,
        end_ms: int,
        mode: CountEditMode,
        requested: tuple[int | None, int | None, int | None],
        username: str,
        comment: str,
        now_ms: int,
        hook: CountEditHook,
    ) -> CountEdit:
        """Store an edit (see the module); CountEditError for an impossible request (nothing
        changed), MesUnavailableError when the database does not answer. The period's length is
        the caller's to bound (``MesLimits.edit_max_days``)."""
        if not self.service.is_bound(asset):
            raise CountEditError(f"{asset} has no state tag, so no counts are kept for it")
        stored: list[CountEdit] = []
        with self.service.exclusive():
            bounds = self._bounds(asset, start_ms, end_ms)
            existing = self.figures(asset, bounds)
            current = sum(existing, CountTriple(0, 0, 0))
            change = resolve_change(mode, current, *requested)
            corrections = plan_corrections(asset, bounds, existing, change)
            edit = CountEdit(
                0, asset, start_ms, end_ms, mode, requested, change, username, comment, now_ms
            )

            def write(connection: Transaction) -> None:
                done = self.repository.insert_edit(connection, edit, corrections)
                hook(connection, None, done)
                stored[:] = [done]  # a retried transaction gives the edit another id

            changes = MesChanges()
            scratch = self.service.rollup_scratch()
            increments(changes, scratch, scratch.apply_counts(added=corrections))
            changes.hooks.append(write)
            self.service.store_edit(changes)
        self.service.notify_edited([asset])
        return stored[0]

    def revert(self, edit_id: int, username: str, now_ms: int, hook: CountEditHook) -> CountEdit:
        """Take an edit back; LookupError if unknown, DomainError if already reverted or if
        the period would go below zero without it (a later edit relies on it)."""
        stored: list[CountEdit] = []
        with self.service.exclusive():
            edit = self.repository.get_edit(edit_id)
            if edit is None:
                raise LookupError(f"no count edit {edit_id}")
            if not edit.active:
                raise DomainError(
                    f"count edit {edit_id} was already reverted by {edit.reverted_by}"
                )
            asset = edit.asset
            corrections = self.repository.corrections(
                asset, edit.start_ms, edit.end_ms, edit_id=edit_id
            )
            bounds = self._bounds(asset, edit.start_ms, edit.end_ms)
            own = segment_figures(bounds, corrections)
            for i, (now, mine) in enumerate(zip(self.figures(asset, bounds), own, strict=True)):
                after = now - mine
                if after.outfeed < 0 or after.waste < 0:
                    raise DomainError(
                        f"without count edit {edit_id} the counts from {bounds[i]} to "
                        f"{bounds[i + 1]} would go below zero (outfeed {after.outfeed}, waste "
                        f"{after.waste}); revert the later edits of that period first"
                    )

            def write(connection: Transaction) -> None:
                done = self.repository.mark_reverted(connection, edit_id, username, now_ms)
                hook(connection, edit, done)
                stored[:] = [done]

            changes = MesChanges()
            scratch = self.service.rollup_scratch()
            increments(changes, scratch, scratch.apply_counts(removed=corrections))
            changes.hooks.append(write)
            self.service.store_edit(changes)
        self.service.notify_edited([asset])
        return stored[0]
