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

Memory (``andon.server._mes_window``): the builders keep ``horizon_ms`` of data behind the newest
sample (never ahead of the clock); older samples are not derived (logged and counted). An edit of
an older interval loads the stored records it needs first. Run changes: ``mes_run_changes``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from zoneinfo import ZoneInfo

from andon.domain import (
    DEFAULT_SMALL_STOP_MS,
    AssetPath,
    CounterSample,
    Mode,
    ModeSample,
    RollupBuilder,
    RollupKey,
    Run,
    RunBook,
    ShiftCalendar,
    StateInterval,
    StateOverride,
    StateSample,
)
from andon.server._mes_derive import (
    AssetState,
    apply_safely,
    increments,
    record_counters,
    to_int,
)
from andon.server._mes_window import HistoryLookup, load_stored, prune, samples_under
from andon.server.mes_limits import MesLimits
from andon.server.mes_manual_edits import (
    DerivedSink,
    EditOutOfReachError,
    IntervalHook,
    ManualEdits,
    MesUnavailableError,
    Unsettled,
)
from andon.server.mes_run_changes import RunChanges
from andon.server.plant_file import COUNTERS, PlantModel
from andon.storage.mes import MesChanges, MesRepository, MesWrite
from andon.storage.mes_aggregates import MesAggregates
from andon.storage.mes_edits import MesEditRepository
from andon.storage.mes_runs import PlantRecords, RunRepository
from andon.storage.types import Sample

__all__ = [
    "DEFAULT_HORIZON_MS",
    "DerivedSink",
    "EditOutOfReachError",
    "IntervalHook",
    "MesService",
    "MesUnavailableError",
]

#: How far behind the newest sample the builders keep data for late store-and-forward data.
DEFAULT_HORIZON_MS = 7 * 86_400_000
#: Names of modes the plant file does not define kept as ``Mode`` objects (bounded: the names
#: come from the PLC).
_OTHER_MODES_KEPT = 256

log = logging.getLogger(__name__)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class MesService(ManualEdits, RunChanges):
    def __init__(
        self,
        plant: PlantModel,
        repository: MesRepository,
        runs: RunRepository,
        sink: DerivedSink,
        *,
        small_stop_ms: int = DEFAULT_SMALL_STOP_MS,
        history: HistoryLookup | None = None,
        horizon_ms: int = DEFAULT_HORIZON_MS,
        clock: Callable[[], int] = _now_ms,
        limits: MesLimits | None = None,
    ) -> None:
        self.plant = plant
        self.repository = repository
        self.run_repository = runs
        self.edit_repository = MesEditRepository(repository.engine)
        self.aggregates = MesAggregates(repository.engine)
        #: How much one edit or query may cover (settings; ``andon.server.mes_limits``).
        self.limits = limits or MesLimits.defaults()
        self._sink = sink
        self.small_stop_ms = small_stop_ms
        # The PLC's state codes under states added by hand are read back from the history.
        self._history = history
        self.horizon_ms = horizon_ms
        self._prune_step_ms = max(horizon_ms // 8, 60_000)
        self._clock = clock
        repository.set_modes(plant.modes)
        self._lock = threading.RLock()
        self._assets = {asset: AssetState(plant, asset) for asset in plant.bound_assets}
        for binding in plant.bindings.values():
            self._assets[binding.asset].bound.add(binding.role)
        self._zones: dict[AssetPath, ZoneInfo] = {}
        self._lineages: dict[AssetPath, tuple[AssetPath, ...]] = {}
        self._other_modes: dict[str, Mode] = {}  # modes the plant file does not define
        self._books: dict[AssetPath, RunBook] = {}
        self._order_item = {o.id: o.item_id for o in plant.orders.values()}
        self.skipped_total = 0  # samples of bound tags that could not be used (logged)
        self._unsettled: list[Unsettled] = []  # edits not stored when their request gave up
        #: Called with each asset a stored manual edit changed (the web UI and the UNS mirror).
        self.edit_listeners: list[Callable[[AssetPath], None]] = []

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

    def seed(
        self,
        asset: AssetPath,
        intervals: Iterable[StateInterval],
        added: Sequence[StateOverride] = (),
    ) -> None:
        """Give a builder the intervals already stored (and the states added by hand among
        them), without persisting anything: samples before the first of them are not derived
        again (they would overlap stored history)."""
        state = self._assets[asset]
        known = list(intervals)
        if known or added:
            with self._lock:
                plc = samples_under(self._history, self.state_tag(asset), added)
                load_stored(state, asset, known, added, plc)
        if known:
            state.state_floor_ms = known[0].start_ms

    def forget(self, assets: Iterable[AssetPath]) -> None:
        """Empty the builders of ``assets`` (a cluster node taking over their domain re-derives
        them from what the database holds, ``mes_recovery.recover(..., assets=)``): what it
        derived while passive was never stored."""
        with self._lock:
            for asset in assets:
                old = self._assets.get(asset)
                if old is not None:
                    fresh = self._assets[asset] = AssetState(self.plant, asset)
                    fresh.bound = set(old.bound)

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
        books = self._books
        for current in self._lineage(asset):
            book = books.get(current)
            run = None if book is None else book.run_at(ts_ms)
            if run is not None:
                return run
        return None

    def _lineage(self, asset: AssetPath) -> tuple[AssetPath, ...]:
        """The asset and its ancestors, nearest first (asked for every count: kept for the
        bound assets)."""
        found = self._lineages.get(asset)
        if found is None:
            chain: list[AssetPath] = []
            current: AssetPath | None = asset
            while current is not None:
                chain.append(current)
                current = current.parent
            found = tuple(chain)
            if asset in self._assets:
                self._lineages[asset] = found
        return found

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
            return state.intervals.last

    def overlapping(self, asset: AssetPath, start_ms: int, end_ms: int) -> list[StateInterval]:
        """The intervals of ``asset`` the service holds that overlap [start_ms, end_ms) (what
        the database holds once the writer has flushed, for instants within the horizon)."""
        state = self._assets.get(asset)
        if state is None:
            return []
        with self._lock:
            return list(state.intervals.overlapping(start_ms, end_ms))

    def is_bound(self, asset: AssetPath) -> bool:
        return asset in self._assets

    def bound_at_or_below(self, asset: AssetPath) -> list[AssetPath]:
        return [a for a in self._assets if a == asset or asset.is_ancestor_of(a)]

    def state_tag(self, asset: AssetPath) -> str | None:
        found = [
            t for t, b in self.plant.bindings.items() if b.asset == asset and b.role == "state"
        ]
        return found[0] if found else None

    # -- the window in memory (andon.server._mes_window) ----------------------------------------
    def _maybe_prune(self, asset: AssetPath, state: AssetState) -> None:
        if state.newest_ms is None:
            return
        cut = min(state.newest_ms, self._clock()) - self.horizon_ms
        if state.pruned_to_ms is None or cut - state.pruned_to_ms >= self._prune_step_ms:
            prune(state, cut)
            state.pruned_to_ms = cut

    def memory_size(self, asset: AssetPath) -> int:
        """What the asset's builders hold (samples, edits, intervals, deltas): bounded by the
        horizon."""
        state = self._assets[asset]
        with self._lock:
            counters = sum(len(series) for series in state.series.values())
            return state.intervals.memory_size + counters + sum(map(len, state.deltas))

    def rollup_scratch(self) -> RollupBuilder:
        """An empty rollup builder: a change's increments are what it adds up."""
        return RollupBuilder(
            self.zone_for, self.calendar_for, self.cycle_time_ms, self.small_stop_ms
        )

    # -- ingest -------------------------------------------------------------------------------
    def offer(self, samples: Sequence[Sample]) -> dict[AssetPath, int]:
        """Derive from the samples of bound tags (others are ignored); called by ingest.
        Returns the assets they belong to, each with its newest sample's time (what the UNS
        mirror needs to know, found here without a second look at every sample)."""
        bindings = self.plant.bindings
        grouped: dict[AssetPath, list[tuple[str, Sample]]] = {}
        touched_assets: dict[AssetPath, int] = {}
        for sample in samples:
            binding = bindings.get(sample.tag)
            if binding is not None:
                grouped.setdefault(binding.asset, []).append((binding.role, sample))
        if not grouped:
            return touched_assets
        with self._lock:
            self.settle_late()
            changes = MesChanges()
            scratch = self.rollup_scratch()
            touched: set[RollupKey] = set()
            for asset, items in grouped.items():
                touched |= self._derive(asset, items, changes, scratch)
            increments(changes, scratch, touched)
            if changes.rows:
                self._sink.submit_derived(MesWrite(self.repository, changes))
            for asset, items in grouped.items():
                state = self._assets[asset]
                newest = touched_assets[asset] = max(sample.ts_ms for _, sample in items)
                if state.newest_ms is None or newest > state.newest_ms:
                    state.newest_ms = newest
                self._maybe_prune(asset, state)
        return touched_assets

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
                self._skip(sample, "older than the history the MES holds (seeded or horizon)")
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
        if counters:
            touched |= record_counters(asset, state, counters, changes, scratch)
        return touched

    def _mode(self, name: str) -> Mode:
        found = self.plant.modes.get(name) or self._other_modes.get(name)
        if found is None:
            found = Mode(name)
            if len(self._other_modes) < _OTHER_MODES_KEPT:  # every sample names its mode
                self._other_modes[name] = found
        return found

    def _skip(self, sample: Sample, why: str) -> None:
        self.skipped_total += 1
        if self.skipped_total <= 20 or self.skipped_total % 1000 == 0:
            log.warning(
                "MES skipped %s at %d (%r): %s", sample.tag, sample.ts_ms, sample.value, why
            )
