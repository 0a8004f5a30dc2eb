"""Run changes of ``MesService`` (a mixin). The rollups' ideal times depend on the runs, so a run
change re-rates the counts (and count corrections) of the span where the rating changes, and the
run change, its audit entry and the re-rated rollups commit in one transaction (a crash cannot
leave rollups rated against a run that no longer is).

Under the service's lock (``exclusive``): the change is checked against the runs in memory, the
counts of the span are read as groups of equal records per segment (``MesAggregates.groups``,
segments cut at every hour, shift and run boundary, so every record of a group rates alike),
retracted with the current runs and added back with the changed ones. The run change itself runs
in that transaction's hook, checked again by the database; refused, the runs in memory are
reloaded as stored.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Protocol
from zoneinfo import ZoneInfo

from andon.domain import (
    AssetPath,
    DomainError,
    RollupBuilder,
    Run,
    RunBook,
    ShiftCalendar,
    edit_boundaries,
)
from andon.server._mes_derive import increments
from andon.storage.audit import Transaction
from andon.storage.mes import MesChanges
from andon.storage.mes_aggregates import CountGroup, MesAggregates
from andon.storage.mes_runs import RunHook, RunRepository

__all__ = ["RunChanges"]

_FAR = 2**62
Books = Mapping[AssetPath, RunBook]


class _Service(Protocol):
    """What the mixin needs of ``MesService``."""

    _books: dict[AssetPath, RunBook]

    @property
    def _lock(self) -> threading.RLock: ...

    @property
    def run_repository(self) -> RunRepository: ...

    @property
    def aggregates(self) -> MesAggregates: ...

    def exclusive(self) -> AbstractContextManager[None]: ...

    def store_edit(self, changes: MesChanges, undo: Callable[[], None] | None = None) -> None: ...

    def notify_edited(self, assets: Iterable[AssetPath]) -> None: ...

    def rollup_scratch(self) -> RollupBuilder: ...

    def bound_at_or_below(self, asset: AssetPath) -> list[AssetPath]: ...

    def reload_runs(self) -> None: ...

    def zone_for(self, asset: AssetPath) -> ZoneInfo: ...

    def calendar_for(self, asset: AssetPath) -> ShiftCalendar | None: ...

    def store_run_change(
        self, old: Run | None, new: Run | None, store: Callable[[Transaction], object]
    ) -> list[AssetPath]: ...

    def _stored_run(self, run_id: str) -> Run: ...

    def add_run(self, run: Run, hook: RunHook | None = None) -> Run: ...


def _books_with(books: Books, old: Run | None, new: Run | None) -> dict[AssetPath, RunBook]:
    """The runs after the change (DomainError if it breaks a rule: overlap, duplicate id)."""
    changed = dict(books)
    run = new if new is not None else old
    assert run is not None
    kept = [r for r in books.get(run.asset, ()) if old is None or r.id != old.id]
    book = RunBook(run.asset, kept)
    if new is not None:
        book.add(new)
    changed[run.asset] = book
    return changed


def _rerated_span(old: Run | None, new: Run | None) -> tuple[int, int] | None:
    """[start, end) where counts rate differently after the change (end _FAR: open)."""
    runs = [r for r in (old, new) if r is not None]
    if old is None or new is None or old.order_id != new.order_id:
        ends = [_FAR if r.end_ms is None else r.end_ms for r in runs]
        return min(r.start_ms for r in runs), max(ends)
    pieces = []  # the same order: only where one run applies and the other not
    if old.start_ms != new.start_ms:
        pieces.append(sorted((old.start_ms, new.start_ms)))
    if old.end_ms != new.end_ms:
        pieces.append(sorted(_FAR if r.end_ms is None else r.end_ms for r in (old, new)))
    if not pieces:
        return None
    return min(p[0] for p in pieces), max(p[1] for p in pieces)


def _run_edges(books: Iterable[Books], asset: AssetPath, start_ms: int, end_ms: int) -> set[int]:
    """The run starts and ends inside (start_ms, end_ms) on the asset and its ancestors (a
    line's run applies to its cells): where a count's cycle time may change."""
    edges: set[int] = set()
    for runs in books:
        current: AssetPath | None = asset
        while current is not None:
            book = runs.get(current)
            for run in () if book is None else book.overlapping(start_ms, end_ms):
                edges.update(t for t in (run.start_ms, run.end_ms) if t is not None)
            current = current.parent
    return {t for t in edges if start_ms < t < end_ms}


class RunChanges:
    """Mixed into ``MesService`` (the methods' ``self`` is the service)."""

    def start_run(
        self: _Service,
        run_id: str,
        order_id: str,
        asset: AssetPath,
        start_ms: int,
        hook: RunHook | None = None,
    ) -> Run:
        return self.add_run(Run(run_id, order_id, asset, start_ms, None), hook)

    def add_run(self: _Service, run: Run, hook: RunHook | None = None) -> Run:
        with self.exclusive():
            affected = self.store_run_change(
                None, run, lambda c: self.run_repository.add_run_in(c, run, hook)
            )
        self.notify_edited(affected)
        return run

    def end_run(self: _Service, run_id: str, end_ms: int, hook: RunHook | None = None) -> Run:
        with self.exclusive():
            old = self._stored_run(run_id)
            if old.end_ms is not None:
                raise DomainError(f"run {run_id!r} has already ended at {old.end_ms}")
            new = replace(old, end_ms=end_ms)  # Run checks end > start
            affected = self.store_run_change(
                old, new, lambda c: self.run_repository.end_run_in(c, run_id, end_ms, hook)
            )
        self.notify_edited(affected)
        return new

    def edit_run(self: _Service, run: Run, hook: RunHook | None = None) -> Run:
        """Another order, start or end for a stored run (same asset); counts in the old and the
        new span are re-rated."""
        with self.exclusive():
            old = self._stored_run(run.id)
            if old.asset != run.asset:
                raise DomainError(f"run {run.id!r} cannot move to another asset")
            affected = self.store_run_change(
                old, run, lambda c: self.run_repository.edit_run_in(c, run, hook)
            )
        self.notify_edited(affected)
        return run

    def delete_run(self: _Service, run_id: str, hook: RunHook | None = None) -> Run:
        with self.exclusive():
            old = self._stored_run(run_id)
            affected = self.store_run_change(
                old, None, lambda c: self.run_repository.delete_run_in(c, run_id, hook)
            )
        self.notify_edited(affected)
        return old

    def _stored_run(self: _Service, run_id: str) -> Run:
        run = self.run_repository.get_run(run_id)
        if run is None:
            raise DomainError(f"unknown run {run_id!r}")
        return run

    def store_run_change(
        self: _Service, old: Run | None, new: Run | None, store: Callable[[Transaction], object]
    ) -> list[AssetPath]:
        """Inside ``exclusive``: the run change (``store``, in the transaction) with the counts
        of the span re-rated (see the module); returns the assets whose figures changed."""
        before = self._books
        after = _books_with(before, old, new)
        run = new if new is not None else old
        assert run is not None
        affected = self.bound_at_or_below(run.asset)
        span = _rerated_span(old, new)
        groups: list[CountGroup] = []
        for leaf in affected if span is not None else ():
            assert span is not None
            found = self.aggregates.count_span(leaf, *span)
            if found is None:
                continue
            start, end = found[0], found[1] + 1  # from the first count to the last one
            cuts = set(edit_boundaries(start, end, self.zone_for(leaf), self.calendar_for(leaf)))
            cuts |= _run_edges((before, after), leaf, start, end)
            groups += self.aggregates.groups(leaf, sorted(cuts))
        changes = MesChanges()
        retract = self.rollup_scratch()  # rated with the runs as they are
        increments(changes, retract, retract.apply_count_groups(removed=groups))
        self._books = after
        try:
            add = self.rollup_scratch()  # rated with the runs after the change
            increments(changes, add, add.apply_count_groups(added=groups))
        except BaseException:
            self._books = before
            raise

        def write(connection: Transaction) -> None:
            store(connection)

        changes.hooks.append(write)
        # Refused: the runs in memory are reloaded as stored. Not answered in time: the change
        # stands in memory as it is queued (undone should the database refuse it later).
        self.store_edit(changes, undo=self.reload_runs)
        return affected
