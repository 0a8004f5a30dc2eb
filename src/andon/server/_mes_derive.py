"""The pure helpers of ``MesService``: one bound asset's builders, integer samples, batches
applied safely (one by one when a batch is refused), rollup increments, and restoring manual
edits into a freshly seeded builder."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from andon.domain import (
    AssetPath,
    CountChanges,
    CountDelta,
    CounterSample,
    CountSeries,
    DomainError,
    IntervalBuilder,
    IntervalChanges,
    ModeSample,
    ProducedCount,
    RollupBuilder,
    RollupKey,
    StateInterval,
    StateSample,
)
from andon.domain.sample_log import SampleLog
from andon.server.plant_file import COUNTERS, PlantModel
from andon.storage.mes import MesChanges

__all__ = [
    "AssetState",
    "apply_counter_safely",
    "apply_safely",
    "dropped_counter_jumps",
    "increments",
    "record_counters",
    "restore_edits",
    "to_int",
]

log = logging.getLogger("andon.server.mes_service")
#: How many times its fastest ideal rate a counter may appear to run before a jump is dropped.
IMPLAUSIBLE_RATE_FACTOR = 3
_DROPPED_LOG_EVERY_S = 60.0
_dropped_lock = threading.Lock()
_dropped_total: dict[tuple[str, str], int] = {}
_dropped_logged: dict[tuple[str, str], float] = {}
T = TypeVar("T")


class AssetState:
    def __init__(self, plant: PlantModel, asset: AssetPath) -> None:
        self.intervals = IntervalBuilder(asset, plant.state_maps[asset])
        maximum = plant.counter_max.get(asset, 2**32 - 1)
        fastest = plant.rates.fastest_units_per_ms(asset)
        # A jump beyond what the asset could make even at several times its fastest ideal
        # rate is not production (a restarted or replaced counter): see domain.counts.
        bound = None if fastest is None else fastest * IMPLAUSIBLE_RATE_FACTOR
        self.series = {role: CountSeries(maximum, max_units_per_ms=bound) for role in COUNTERS}
        self.max = maximum
        self.bound: set[str] = set()
        # Per counter (in ``COUNTERS`` order), the summed delta ending at each instant: array
        # columns, not a dict of tuples (a week of 1 Hz counts per asset is kept: the dict cost
        # 105 bytes per asset-second, most of what the MES held after the sample logs).
        self.deltas = (SampleLog(), SampleLog(), SampleLog())
        # Older samples are not derived: they would overlap what was stored before a restart.
        self.state_floor_ms: int | None = None
        self.counter_floor_ms: int | None = None
        self.newest_ms: int | None = None  # newest sample seen: what the pruning horizon trails
        self.pruned_to_ms: int | None = None

    def produced(self, asset: AssetPath, ts_ms: int) -> ProducedCount | None:
        infeed_log, outfeed_log, waste_log = self.deltas
        infeed, outfeed, waste = infeed_log.get(ts_ms), outfeed_log.get(ts_ms), waste_log.get(ts_ms)
        if infeed is None and outfeed is None and waste is None:
            return None
        if "infeed" in self.bound:
            total = infeed or 0
            if "waste" in self.bound:
                reject = waste or 0
            elif "outfeed" in self.bound:
                reject = total - (outfeed or 0)
            else:
                reject = 0
        else:
            reject = waste or 0
            total = (outfeed or 0) + reject
        reject = max(reject, 0)
        total = max(total, reject)
        return None if total == 0 else ProducedCount(asset, ts_ms, total, reject)


def restore_edits(builder: IntervalBuilder, known: Sequence[StateInterval]) -> None:
    """The manual splits and reasons of stored intervals, back in a freshly seeded builder."""
    for interval in known:
        try:
            current = builder.interval_at(interval.start_ms)
            if current is not None and current.start_ms != interval.start_ms:
                builder.split(interval.start_ms)
                current = builder.interval_at(interval.start_ms)
            if current is not None and current.reason_id != interval.reason_id:
                builder.assign_reason(interval.start_ms, interval.reason_id)
        except DomainError:
            continue  # a stored record the rules no longer give: left as derived


def to_int(value: object) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def apply_safely(
    apply: Callable[[list[StateSample], list[ModeSample]], IntervalChanges],
    states: list[StateSample],
    modes: list[ModeSample],
    asset: AssetPath,
) -> IntervalChanges | None:
    if not states and not modes:
        return None
    try:
        return apply(states, modes)
    except DomainError as exc:
        # Two different codes at one instant: the first one stored wins, as in the history.
        log.warning("MES %s: %s; applying the samples one by one", asset, exc)
        removed: list[StateInterval] = []
        added: list[StateInterval] = []
        for one_state in states:
            try:
                part = apply([one_state], [])
            except DomainError:
                continue
            removed.extend(part.removed)
            added.extend(part.added)
        for one_mode in modes:
            try:
                part = apply([], [one_mode])
            except DomainError:
                continue
            removed.extend(part.removed)
            added.extend(part.added)
        gone, new = _net(removed, added)
        return IntervalChanges(removed=gone, added=new)


def _net(removed: list[T], added: list[T]) -> tuple[tuple[T, ...], tuple[T, ...]]:
    """Successive changes folded into one: a record added then removed never existed, and one
    removed then added back is unchanged."""
    gone, new = list(removed), list(added)
    for record in list(gone):
        if record in new:
            new.remove(record)
            gone.remove(record)
    return tuple(gone), tuple(new)


def apply_counter_safely(
    series: CountSeries, values: list[CounterSample], asset: AssetPath, role: str
) -> CountChanges | None:
    if not values:
        return None
    try:
        return _report_dropped(series.apply(values), asset, role)
    except DomainError as exc:
        # A value contradicting a stored one at the same instant: the first one wins, as in
        # the history; the others of the batch still count.
        log.warning("MES %s %s: %s; applying the values one by one", asset, role, exc)
    removed: list[CountDelta] = []
    added: list[CountDelta] = []
    for value in values:
        try:
            part = series.apply([value])
        except DomainError:
            continue
        removed.extend(part.removed)
        added.extend(part.added)
    gone, new = _net(removed, added)
    return _report_dropped(CountChanges(gone, new), asset, role)


def _report_dropped(changes: CountChanges, asset: AssetPath, role: str) -> CountChanges:
    dropped = [delta for delta in changes.added if delta.dropped]
    if not dropped:
        return changes
    key = (str(asset), role)
    with _dropped_lock:
        _dropped_total[key] = _dropped_total.get(key, 0) + len(dropped)
        now = time.monotonic()
        due = now - _dropped_logged.get(key, -_DROPPED_LOG_EVERY_S) >= _DROPPED_LOG_EVERY_S
        if due:
            _dropped_logged[key] = now
    if due:  # at most once a minute per counter: a flapping device must not flood the log
        first = dropped[0]
        log.warning(
            "MES %s %s: the counter jumped by %d between %d and %d, faster than the asset "
            "can produce; not counted (the new value is the new baseline; %d such jumps so far)",
            asset, role, first.dropped, first.start_ms, first.end_ms, _dropped_total[key],
        )  # fmt: skip
    return changes


def dropped_counter_jumps() -> dict[tuple[str, str], int]:
    """Counter jumps not counted so far, per (asset, counter role): for metrics."""
    with _dropped_lock:
        return dict(_dropped_total)


def record_counters(
    asset: AssetPath,
    state: AssetState,
    counters: dict[str, list[CounterSample]],
    changes: MesChanges,
    scratch: RollupBuilder,
) -> frozenset[RollupKey]:
    """The samples of all the asset's counters in a batch, recorded in one pass: the PLC updates
    them together, so their deltas end at the same instants, and each instant's count is
    retracted and added once rather than once per counter (the same net change)."""
    applied = []
    for role, values in counters.items():
        count_changes = apply_counter_safely(state.series[role], values, asset, role)
        if count_changes is not None:
            applied.append((COUNTERS.index(role), count_changes))
    if not applied:
        return frozenset()
    affected = {d.end_ms for _, c in applied for d in (*c.removed, *c.added)}
    before = {ts: state.produced(asset, ts) for ts in affected}
    for index, count_changes in applied:
        sums = state.deltas[index]
        for sign, deltas in ((-1, count_changes.removed), (1, count_changes.added)):
            for delta in deltas:
                sums.put(delta.end_ms, (sums.get(delta.end_ms) or 0) + sign * delta.delta)
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


def increments(changes: MesChanges, scratch: RollupBuilder, touched: Iterable[RollupKey]) -> None:
    for key in touched:
        rollup = scratch.get(key)
        if rollup is not None:
            changes.add_account(
                str(key.asset), key.kind.value, key.start_ms, key.end_ms, key.label, rollup.account
            )
