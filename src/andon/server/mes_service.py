"""``MesService``: bound tag samples -> state intervals, counts and rollups, persisted through the
historian writer.

Ingest hands every batch of samples (live and store-and-forward history alike) to ``offer``. The
domain builders are insensitive to arrival order, so late data ends exactly as live data would
have: the service only persists the changes the builders return, and turns each change into
rollup increments with a scratch ``RollupBuilder`` (a removed interval or count adds the negated
contribution). Nothing here depends on wall-clock time except the live tail, added at query time.

Counters: the deltas of an asset's counters that end at the same instant form one
``ProducedCount`` (infeed = total, waste = reject; with outfeed + waste, total = their sum). The
PLC updates them together, so that is the normal case; a waste delta that arrives alone is
counted as made and rejected at that instant (total is never below reject).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from typing import Protocol
from zoneinfo import ZoneInfo

from andon.domain import (
    DEFAULT_SMALL_STOP_MS,
    AssetPath,
    CounterSample,
    DomainError,
    IntervalBuilder,
    IntervalChanges,
    Mode,
    ModeSample,
    ProducedCount,
    RollupBuilder,
    RollupKey,
    Run,
    RunBook,
    ShiftCalendar,
    StateInterval,
    StateSample,
)
from andon.server._mes_derive import (
    AssetState,
    apply_counter_safely,
    apply_safely,
    increments,
    restore_edits,
    to_int,
)
from andon.server.plant_file import COUNTERS, PlantModel
from andon.storage.audit import Transaction
from andon.storage.mes import MesChanges, MesRepository, MesWrite
from andon.storage.mes_runs import PlantRecords, RunHook, RunRepository
from andon.storage.types import Sample

__all__ = ["DerivedSink", "IntervalHook", "MesService", "MesUnavailableError"]

log = logging.getLogger(__name__)

#: Called inside the transaction that stores a manual interval edit, with what changed.
IntervalHook = Callable[[Transaction, IntervalChanges], None]


class DerivedSink(Protocol):
    """What the service needs of the historian writer (``submit_derived`` and ``flush``)."""

    def submit_derived(self, write: MesWrite, timeout: float | None = None) -> bool: ...

    def flush(self, timeout: float | None = None) -> bool: ...


class MesUnavailableError(DomainError):
    """The database did not take the pending derived writes in time; the edit was not made."""


class MesService:
    def __init__(
        self,
        plant: PlantModel,
        repository: MesRepository,
        runs: RunRepository,
        sink: DerivedSink,
        *,
        small_stop_ms: int = DEFAULT_SMALL_STOP_MS,
    ) -> None:
        self.plant = plant
        self.repository = repository
        self.run_repository = runs
        self._sink = sink
        self.small_stop_ms = small_stop_ms
        repository.set_modes(plant.modes)
        self._lock = threading.RLock()
        self._assets = {asset: AssetState(plant, asset) for asset in plant.bound_assets}
        for binding in plant.bindings.values():
            self._assets[binding.asset].bound.add(binding.role)
        self._zones: dict[AssetPath, ZoneInfo] = {}
        self._books: dict[AssetPath, RunBook] = {}
        self._order_item = {o.id: o.item_id for o in plant.orders.values()}
        self.skipped_total = 0  # samples of bound tags that could not be used (logged)

    # -- lifecycle ----------------------------------------------------------------------------
    def load(self) -> None:
        """Store the plant structure, add the plant file's new orders and runs, read runs."""
        p = self.plant
        self.run_repository.save_plant(
            PlantRecords(
                p.tree,
                {tag: (b.asset, b.role) for tag, b in p.bindings.items()},
                p.state_maps,
                p.counter_max,
                p.reasons,
                p.items.values(),
                p.rate_list,
                p.calendars,
            )
        )
        self.run_repository.insert_missing(p.orders.values(), p.runs)
        self.reload_runs()

    def reload_runs(self) -> None:
        with self._lock:
            self._order_item = {o.id: o.item_id for o in self.run_repository.orders()}
            books: dict[AssetPath, RunBook] = {}
            for run in self.run_repository.runs():
                books.setdefault(run.asset, RunBook(run.asset)).add(run)
            self._books = books

    def seed(self, asset: AssetPath, intervals: Iterable[StateInterval]) -> None:
        """Give a builder the intervals already stored, without persisting anything: samples
        before the first of them are not derived again (they would overlap stored history)."""
        state = self._assets[asset]
        known = list(intervals)
        if known:
            state.intervals.apply(
                [StateSample(iv.start_ms, iv.code) for iv in known],
                [ModeSample(iv.start_ms, iv.mode) for iv in known],
            )
            state.state_floor_ms = known[0].start_ms
            restore_edits(state.intervals, known)

    def seed_counter(self, asset: AssetPath, role: str, samples: Sequence[Sample]) -> None:
        state = self._assets[asset]
        values = [CounterSample(s.ts_ms, v) for s in samples if (v := to_int(s.value)) is not None]
        state.series[role].apply(v for v in values if 0 <= v.value <= state.max)
        if values:
            first = values[0].ts_ms
            floor = state.counter_floor_ms
            state.counter_floor_ms = first if floor is None else max(floor, first)

    # -- lookups ------------------------------------------------------------------------------
    def zone_for(self, asset: AssetPath) -> ZoneInfo:
        zone = self._zones.get(asset)
        if zone is None:
            zone = self._zones[asset] = self.plant.tree.site_of(asset).zone
        return zone

    def calendar_for(self, asset: AssetPath) -> ShiftCalendar | None:
        return self.plant.calendar_for(asset)

    def run_at(self, asset: AssetPath, ts_ms: int) -> Run | None:
        """The run on the asset at that instant, or on its nearest ancestor (a line's run
        applies to its cells)."""
        current: AssetPath | None = asset
        while current is not None:
            book = self._books.get(current)
            run = None if book is None else book.run_at(ts_ms)
            if run is not None:
                return run
            current = current.parent
        return None

    def item_of_order(self, order_id: str) -> str | None:
        return self._order_item.get(order_id)

    def cycle_time_ms(self, asset: AssetPath, ts_ms: int) -> Fraction | None:
        run = self.run_at(asset, ts_ms)
        item = None if run is None else self._order_item.get(run.order_id)
        return None if item is None else self.plant.rates.cycle_time_ms(item, asset)

    def current(self, asset: AssetPath) -> StateInterval | None:
        state = self._assets.get(asset)
        if state is None:
            return None
        with self._lock:
            intervals = state.intervals.intervals
        return intervals[-1] if intervals else None

    def interval_at(self, asset: AssetPath, ts_ms: int) -> StateInterval | None:
        state = self._assets.get(asset)
        if state is None:
            return None
        with self._lock:
            return state.intervals.interval_at(ts_ms)

    def is_bound(self, asset: AssetPath) -> bool:
        return asset in self._assets

    def _scratch(self) -> RollupBuilder:
        return RollupBuilder(
            self.zone_for, self.calendar_for, self.cycle_time_ms, self.small_stop_ms
        )

    # -- ingest -------------------------------------------------------------------------------
    def offer(self, samples: Sequence[Sample]) -> None:
        """Derive from the samples of bound tags (others are ignored); called by ingest."""
        bindings = self.plant.bindings
        grouped: dict[AssetPath, list[tuple[str, Sample]]] = {}
        for sample in samples:
            binding = bindings.get(sample.tag)
            if binding is not None:
                grouped.setdefault(binding.asset, []).append((binding.role, sample))
        if not grouped:
            return
        with self._lock:
            changes = MesChanges()
            scratch = self._scratch()
            touched: set[RollupKey] = set()
            for asset, items in grouped.items():
                touched |= self._derive(asset, items, changes, scratch)
            increments(changes, scratch, touched)
            if changes.rows:
                self._sink.submit_derived(MesWrite(self.repository, changes))

    def _derive(
        self,
        asset: AssetPath,
        items: list[tuple[str, Sample]],
        changes: MesChanges,
        scratch: RollupBuilder,
    ) -> set[RollupKey]:
        state = self._assets[asset]
        state_floor, counter_floor = state.state_floor_ms, state.counter_floor_ms
        states: list[StateSample] = []
        modes: list[ModeSample] = []
        counters: dict[str, list[CounterSample]] = {}
        for role, sample in items:
            floor = counter_floor if role in COUNTERS else state_floor
            if floor is not None and sample.ts_ms < floor:
                self._skip(sample, "older than the history the MES was seeded with")
                continue
            if role == "mode":
                if isinstance(sample.value, str) and sample.value.strip():
                    name = sample.value.strip()
                    modes.append(ModeSample(sample.ts_ms, self._mode(name)))
                else:
                    self._skip(sample, "a mode must be a non-empty text")
                continue
            value = to_int(sample.value)
            if value is None:
                self._skip(sample, "not an integer")
            elif role == "state":
                states.append(StateSample(sample.ts_ms, value))
            elif 0 <= value <= state.max:
                counters.setdefault(role, []).append(CounterSample(sample.ts_ms, value))
            else:
                self._skip(sample, f"counter value outside 0..{state.max}")
        touched: set[RollupKey] = set()
        interval_changes = apply_safely(state.intervals.apply, states, modes, asset)
        if interval_changes is not None:
            for interval in interval_changes.removed:
                changes.intervals[(str(asset), interval.start_ms)] = None
            for interval in interval_changes.added:
                changes.intervals[(str(asset), interval.start_ms)] = interval
            touched |= scratch.apply_intervals(interval_changes)
        for role, values in counters.items():
            touched |= self._apply_counter(asset, state, role, values, changes, scratch)
        return touched

    def _apply_counter(
        self,
        asset: AssetPath,
        state: AssetState,
        role: str,
        values: list[CounterSample],
        changes: MesChanges,
        scratch: RollupBuilder,
    ) -> frozenset[RollupKey]:
        count_changes = apply_counter_safely(state.series[role], values, asset, role)
        if count_changes is None:
            return frozenset()
        index = COUNTERS.index(role)
        affected = {d.end_ms for d in (*count_changes.removed, *count_changes.added)}
        before = {ts: state.produced(asset, ts) for ts in affected}
        for sign, deltas in ((-1, count_changes.removed), (1, count_changes.added)):
            for delta in deltas:
                triple = state.deltas.setdefault(delta.end_ms, [None, None, None])
                triple[index] = (triple[index] or 0) + sign * delta.delta
        return self._record_counts(asset, state, before, changes, scratch)

    def _record_counts(
        self,
        asset: AssetPath,
        state: AssetState,
        before: dict[int, ProducedCount | None],
        changes: MesChanges,
        scratch: RollupBuilder,
    ) -> frozenset[RollupKey]:
        removed, added = [], []
        for ts, old in before.items():
            new = state.produced(asset, ts)
            if new == old:
                continue
            if old is not None:
                removed.append(old)
            if new is not None:
                added.append(new)
            changes.counts[(str(asset), ts)] = new
        return scratch.apply_counts(removed, added)

    def _mode(self, name: str) -> Mode:
        return self.plant.modes.get(name) or Mode(name)

    def _skip(self, sample: Sample, why: str) -> None:
        self.skipped_total += 1
        if self.skipped_total <= 20 or self.skipped_total % 1000 == 0:
            log.warning(
                "MES skipped %s at %d (%r): %s", sample.tag, sample.ts_ms, sample.value, why
            )

    # -- manual interval edits ----------------------------------------------------------------
    def assign_reason(
        self, asset: AssetPath, start_ms: int, reason_id: str | None, hook: IntervalHook
    ) -> IntervalChanges:
        """The reason of the stop starting at ``start_ms`` (None: its state's default)."""
        return self.edit_intervals(asset, lambda b: b.assign_reason(start_ms, reason_id), hook)

    def split_interval(self, asset: AssetPath, at_ms: int, hook: IntervalHook) -> IntervalChanges:
        return self.edit_intervals(asset, lambda b: b.split(at_ms), hook)

    def edit_intervals(
        self,
        asset: AssetPath,
        edit: Callable[[IntervalBuilder], IntervalChanges],
        hook: IntervalHook,
    ) -> IntervalChanges:
        """The builder's change, its rollup increments and ``hook`` (the audit entry) in one
        derived write; waits until it is stored (else it is still queued, and retried)."""
        state = self._assets.get(asset)
        if state is None:
            raise DomainError(f"{asset} has no state tag")
        with self._lock:
            if not self._sink.flush(timeout=30.0):
                raise MesUnavailableError("the database is not answering; try again later")
            interval_changes = edit(state.intervals)
            if interval_changes.is_empty:
                return interval_changes
            changes = MesChanges()
            for interval in interval_changes.removed:
                changes.intervals[(str(asset), interval.start_ms)] = None
            for interval in interval_changes.added:
                changes.intervals[(str(asset), interval.start_ms)] = interval
            scratch = self._scratch()
            increments(changes, scratch, scratch.apply_intervals(interval_changes))
            changes.hooks.append(lambda connection: hook(connection, interval_changes))
            self._sink.submit_derived(MesWrite(self.repository, changes))
        if not self._sink.flush(timeout=30.0):
            log.warning("MES edit of %s queued; the database is slow to store it", asset)
        return interval_changes

    # -- runs (the rollups' ideal times depend on them) ------------------------------------------
    def start_run(
        self,
        run_id: str,
        order_id: str,
        asset: AssetPath,
        start_ms: int,
        hook: RunHook | None = None,
    ) -> Run:
        return self.change_runs(
            asset, start_ms, None,
            lambda: self.run_repository.start_run(run_id, order_id, asset, start_ms, hook),
        )  # fmt: skip

    def add_run(self, run: Run, hook: RunHook | None = None) -> Run:
        return self.change_runs(
            run.asset, run.start_ms, run.end_ms, lambda: self.run_repository.add_run(run, hook)
        )

    def end_run(self, run_id: str, end_ms: int, hook: RunHook | None = None) -> Run:
        with self._lock:
            run = self.run_repository.get_run(run_id)
            if run is None:
                raise DomainError(f"unknown run {run_id!r}")
            return self.change_runs(
                run.asset, end_ms, None, lambda: self.run_repository.end_run(run_id, end_ms, hook)
            )

    def edit_run(self, run: Run, hook: RunHook | None = None) -> Run:
        """Another order, start or end for a stored run (same asset); counts in the old and the
        new span are re-rated."""
        with self._lock:
            old = self.run_repository.get_run(run.id)
            if old is None:
                raise DomainError(f"unknown run {run.id!r}")
            ends = (old.end_ms, run.end_ms)
            end = None if None in ends else max(e for e in ends if e is not None)
            return self.change_runs(
                run.asset, min(old.start_ms, run.start_ms), end,
                lambda: self.run_repository.edit_run(run, hook)[1],
            )  # fmt: skip

    def delete_run(self, run_id: str, hook: RunHook | None = None) -> Run:
        with self._lock:
            old = self.run_repository.get_run(run_id)
            if old is None:
                raise DomainError(f"unknown run {run_id!r}")
            return self.change_runs(
                old.asset, old.start_ms, old.end_ms,
                lambda: self.run_repository.delete_run(run_id, hook),
            )  # fmt: skip

    def change_runs(
        self, asset: AssetPath, start_ms: int, end_ms: int | None, change: Callable[[], Run]
    ) -> Run:
        """Counts in [start_ms, end_ms) are re-rated: retracted with the old runs, the change
        stored, then added back with the new ones, as the rollup rules require."""
        with self._lock:
            if not self._sink.flush(timeout=30.0):
                raise MesUnavailableError("the database is not answering; try again later")
            run = change()
            until = 2**62 if end_ms is None else end_ms
            affected = [a for a in self._assets if a == asset or asset.is_ancestor_of(a)]
            counts = [c for a in affected for c in self.repository.counts(a, start_ms, until)]
            changes = MesChanges()
            retract = self._scratch()
            touched = retract.apply_counts(removed=counts)
            increments(changes, retract, touched)
            self.reload_runs()
            add = self._scratch()
            touched = add.apply_counts(added=counts)
            increments(changes, add, touched)
            if changes.rows:
                self._sink.submit_derived(MesWrite(self.repository, changes))
            return run
