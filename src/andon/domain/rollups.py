"""Rollups per asset x local hour and per asset x shift instance, kept current at ingest.

Each rollup holds the ``TimeAccount`` of the closed state intervals and the counts that fall in its
bucket, so a year of OEE is a sum of ~8,760 hourly accounts instead of a scan of raw data.
Updates are incremental and exact: every interval or count contributes a fixed account to each
bucket it touches, and a retraction (an interval removed because late data re-derived it)
subtracts the very same contribution.

Rules the service must keep:

* Open intervals are not rolled up (their end is unknown); they arrive when they close, as the
  ``added`` side of an ``IntervalChanges``. A live query adds the open interval's part itself
  (``oee.account_for`` over [its start, now)).
* The count contribution depends on the ideal cycle time at the count's instant: before editing
  runs or rates, retract the affected counts with ``apply_counts(removed=...)`` and add them back
  after the edit. A calendar change needs the affected buckets rebuilt the same way.
* ``no_data_ms`` is not stored; ``total`` fills it in as bucket time not covered by intervals.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from zoneinfo import ZoneInfo

from andon.domain.assets import AssetPath
from andon.domain.calendar import ShiftCalendar, ShiftInstance, hour_bucket, hour_bucket_start
from andon.domain.counts import CountRecord
from andon.domain.errors import DomainError
from andon.domain.intervals import IntervalChanges, StateInterval
from andon.domain.oee import (
    DEFAULT_SMALL_STOP_MS,
    SUMMED_FIELDS,
    CycleTimeLookup,
    TimeAccount,
    calendar_segments,
    count_contribution,
    interval_contribution,
)

__all__ = ["BucketKind", "Rollup", "RollupBuilder", "RollupKey"]

_EMPTY = TimeAccount()


class BucketKind(enum.Enum):
    HOUR = "hour"
    SHIFT = "shift"


@dataclass(frozen=True, slots=True, order=True)
class RollupKey:
    asset: AssetPath
    kind: BucketKind
    start_ms: int
    end_ms: int
    label: str = ""  # shift instance key ("2024-03-30/Night") for SHIFT buckets

    @property
    def length_ms(self) -> int:
        return self.end_ms - self.start_ms


@dataclass(frozen=True, slots=True)
class Rollup:
    key: RollupKey
    account: TimeAccount


class RollupBuilder:
    def __init__(
        self,
        zone_for: Callable[[AssetPath], ZoneInfo],
        calendar_for: Callable[[AssetPath], ShiftCalendar | None],
        ideal_cycle_ms: CycleTimeLookup | None = None,
        small_stop_ms: int = DEFAULT_SMALL_STOP_MS,
    ) -> None:
        self._zone_for = zone_for
        self._calendar_for = calendar_for
        self._ideal_cycle_ms = ideal_cycle_ms
        self._small_stop_ms = small_stop_ms
        self._rollups: dict[tuple[AssetPath, BucketKind], dict[int, Rollup]] = {}

    # -- updates -----------------------------------------------------------------------------
    def apply_intervals(self, changes: IntervalChanges) -> frozenset[RollupKey]:
        """Apply what an ``IntervalBuilder`` reported; returns the rollups that changed."""
        touched: set[RollupKey] = set()
        for sign, intervals in ((-1, changes.removed), (1, changes.added)):
            for interval in intervals:
                if interval.end_ms is not None:
                    touched.update(self._add_interval(interval, sign))
        return frozenset(touched)

    def apply_counts(
        self, removed: Iterable[CountRecord] = (), added: Iterable[CountRecord] = ()
    ) -> frozenset[RollupKey]:
        touched: set[RollupKey] = set()
        for sign, counts in ((-1, removed), (1, added)):
            for count in counts:
                cycle = (
                    None
                    if self._ideal_cycle_ms is None
                    else self._ideal_cycle_ms(count.asset, count.ts_ms)
                )
                part = count_contribution(count, cycle)
                for key in self._count_buckets(count):
                    self._add(key, part if sign > 0 else -part)
                    touched.add(key)
        return frozenset(touched)

    def apply_count_groups(
        self,
        removed: Iterable[tuple[CountRecord, int]] = (),
        added: Iterable[tuple[CountRecord, int]] = (),
    ) -> frozenset[RollupKey]:
        """``apply_counts`` for ``(record, times)`` pairs: ``times`` equal records at once. Equal
        records (same bucket, cycle time, total, reject, startup) contribute equal accounts, so
        this is exactly ``apply_counts`` over each record repeated ``times`` times."""
        touched: set[RollupKey] = set()
        for sign, groups in ((-1, removed), (1, added)):
            for count, times in groups:
                cycle = (
                    None
                    if self._ideal_cycle_ms is None
                    else self._ideal_cycle_ms(count.asset, count.ts_ms)
                )
                part = _times(count_contribution(count, cycle), sign * times)
                for key in self._count_buckets(count):
                    self._add(key, part)
                    touched.add(key)
        return frozenset(touched)

    def _add_interval(self, interval: StateInterval, sign: int) -> Iterator[RollupKey]:
        assert interval.end_ms is not None
        for key, shifts in self._interval_buckets(
            interval.asset, interval.start_ms, interval.end_ms
        ):
            segments = calendar_segments(shifts, key.start_ms, key.end_ms)
            part = interval_contribution(interval, segments, self._small_stop_ms)
            self._add(key, part if sign > 0 else -part)
            yield key

    def _add(self, key: RollupKey, part: TimeAccount) -> None:
        buckets = self._rollups.setdefault((key.asset, key.kind), {})
        current = buckets.get(key.start_ms)
        account = part if current is None else current.account + part
        if account == _EMPTY:
            buckets.pop(key.start_ms, None)  # retracted to nothing: no empty rows to persist
        else:
            buckets[key.start_ms] = Rollup(key, account)

    # -- buckets -----------------------------------------------------------------------------
    def _hour_key(self, asset: AssetPath, ts_ms: int, zone: ZoneInfo) -> RollupKey:
        start, end = hour_bucket(ts_ms, zone)
        return RollupKey(asset, BucketKind.HOUR, start, end)

    def _interval_buckets(
        self, asset: AssetPath, start_ms: int, end_ms: int
    ) -> Iterator[tuple[RollupKey, tuple[ShiftInstance, ...] | None]]:
        calendar = self._calendar_for(asset)
        zone = self._zone_for(asset)
        cursor = start_ms
        while cursor < end_ms:
            key = self._hour_key(asset, cursor, zone)
            shifts = None if calendar is None else calendar.shifts_between(key.start_ms, key.end_ms)
            yield key, shifts
            cursor = key.end_ms
        if calendar is not None:
            for shift in calendar.shifts_between(start_ms, end_ms):
                yield self._shift_key(asset, shift), (shift,)

    def _count_buckets(self, count: CountRecord) -> Iterator[RollupKey]:
        yield self._hour_key(count.asset, count.ts_ms, self._zone_for(count.asset))
        calendar = self._calendar_for(count.asset)
        if calendar is not None:
            for shift in calendar.shifts_at(count.ts_ms):
                yield self._shift_key(count.asset, shift)

    @staticmethod
    def _shift_key(asset: AssetPath, shift: ShiftInstance) -> RollupKey:
        return RollupKey(asset, BucketKind.SHIFT, shift.start_ms, shift.end_ms, shift.key)

    # -- queries -----------------------------------------------------------------------------
    def get(self, key: RollupKey) -> Rollup | None:
        return self._rollups.get((key.asset, key.kind), {}).get(key.start_ms)

    def rollups(
        self, asset: AssetPath, kind: BucketKind, start_ms: int, end_ms: int
    ) -> tuple[Rollup, ...]:
        """Stored rollups whose bucket starts in [start_ms, end_ms), by start."""
        buckets = self._rollups.get((asset, kind), {})
        return tuple(buckets[s] for s in sorted(buckets) if start_ms <= s < end_ms)

    def total(self, asset: AssetPath, kind: BucketKind, start_ms: int, end_ms: int) -> TimeAccount:
        """The account of whole buckets starting in [start_ms, end_ms): hours (the period must
        start and end on local hour boundaries) or shift instances (time outside shifts is not
        in any shift bucket). Equal to ``oee.account_for`` over the same time."""
        rollups = self.rollups(asset, kind, start_ms, end_ms)
        account = sum((r.account for r in rollups), TimeAccount())
        if kind is BucketKind.HOUR:
            zone = self._zone_for(asset)
            for edge in (start_ms, end_ms):
                if hour_bucket_start(edge, zone) != edge:
                    raise DomainError(f"{edge} is not on a local hour boundary of {asset}")
            span = end_ms - start_ms
        else:
            calendar = self._calendar_for(asset)
            shifts = () if calendar is None else calendar.shifts_between(start_ms, end_ms)
            span = sum(s.duration_ms for s in shifts if start_ms <= s.start_ms < end_ms)
        return replace(account, no_data_ms=span - account.all_time_ms)


def _times(account: TimeAccount, factor: int) -> TimeAccount:
    """``account`` added ``factor`` times (a count's account has no loss by reason)."""
    values = (getattr(account, name) * factor for name in SUMMED_FIELDS)
    return TimeAccount(*values)
