"""OEE with the ISO 22400-2 / oee.com time model, as an additive account of times and counts.

A ``TimeAccount`` holds times (ms), counts and ideal time (µs); accounts of assets, hours, shifts
or days are combined with ``+`` / ``sum``, and the ratios are derived from the sums, never
averaged. Ratios are ``None`` when their denominator is zero.

* planned production time (PPT) = running + setup + unplanned downtime + blocked + starved
* availability = run time / PPT; performance = ideal time of all pieces / run time;
  quality = good / total; OEE = A x P x Q; loading = PPT / all time; TEEP = OEE x loading
* MTBF = run time / failures; MTTR = unplanned downtime / failures, where a failure is an interval
  accounted as UNPLANNED_DOWNTIME that starts in the period (blocked, starved and setup are not
  failures: the machine did not break).

Calendar precedence (``states.accounted_type``): outside shifts → not scheduled, inside breaks →
planned downtime, then the mode, then the state type; running time is never overridden.
Six big losses and Pareto: ``andon.domain.losses``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields, replace
from fractions import Fraction
from itertools import pairwise
from operator import attrgetter

from andon.domain.assets import AssetPath
from andon.domain.calendar import ShiftInstance
from andon.domain.counts import CountRecord
from andon.domain.errors import DomainError
from andon.domain.intervals import StateInterval
from andon.domain.states import StateType, accounted_type

__all__ = [
    "DEFAULT_SMALL_STOP_MS",
    "SUMMED_FIELDS",
    "UNASSIGNED_REASON",
    "CalendarSegment",
    "CycleTimeLookup",
    "TimeAccount",
    "account_for",
    "calendar_segments",
    "count_contribution",
    "interval_contribution",
    "split_by",
]

DEFAULT_SMALL_STOP_MS = 5 * 60_000
UNASSIGNED_REASON = ""  # key of downtime without a reason (reason ids are never empty)

#: Ideal cycle time in ms of what ``asset`` produced at ``ts_ms``, None when unknown.
CycleTimeLookup = Callable[[AssetPath, int], Fraction | None]

_TYPE_FIELD = {
    StateType.RUNNING: "running_ms",
    StateType.SETUP: "setup_ms",
    StateType.UNPLANNED_DOWNTIME: "unplanned_downtime_ms",
    StateType.BLOCKED: "blocked_ms",
    StateType.STARVED: "starved_ms",
    StateType.PLANNED_DOWNTIME: "planned_downtime_ms",
    StateType.NOT_SCHEDULED: "not_scheduled_ms",
}
_SMALL_STOP_TYPES = (StateType.UNPLANNED_DOWNTIME, StateType.BLOCKED, StateType.STARVED)


def _ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator == 0 else numerator / denominator


def _merge_reasons(
    a: tuple[tuple[str, int], ...], b: tuple[tuple[str, int], ...], sign: int = 1
) -> tuple[tuple[str, int], ...]:
    merged = dict(a)
    for key, ms in b:
        merged[key] = merged.get(key, 0) + sign * ms
    return tuple(sorted((k, v) for k, v in merged.items() if v != 0))


@dataclass(frozen=True, slots=True)
class TimeAccount:
    running_ms: int = 0
    setup_ms: int = 0
    unplanned_downtime_ms: int = 0
    blocked_ms: int = 0
    starved_ms: int = 0
    planned_downtime_ms: int = 0
    not_scheduled_ms: int = 0
    no_data_ms: int = 0  # no state known (before the first sample): not in PPT, visible
    small_stop_ms: int = 0  # part of unplanned + blocked + starved in stops < small_stop_ms
    failures: int = 0
    total_count: int = 0
    reject_count: int = 0
    startup_reject_count: int = 0
    unrated_count: int = 0  # pieces without a known ideal rate: missing from performance
    ideal_time_us: int = 0
    reject_ideal_time_us: int = 0
    startup_reject_ideal_time_us: int = 0
    loss_by_reason: tuple[tuple[str, int], ...] = ()  # availability loss ms by reason id

    def __add__(self, other: TimeAccount) -> TimeAccount:
        if not isinstance(other, TimeAccount):
            return NotImplemented
        # Positional, from a getter built once: sums of accounts run for every count and
        # every trend bucket, and building keyword dicts from fields() dominated profiles.
        summed = map(int.__add__, _summed_values(self), _summed_values(other))
        if not other.loss_by_reason:
            return TimeAccount(*summed, self.loss_by_reason)  # type: ignore[arg-type, call-arg]
        merged = _merge_reasons(self.loss_by_reason, other.loss_by_reason)
        return TimeAccount(*summed, merged)  # type: ignore[arg-type, call-arg]

    def __radd__(self, other: object) -> TimeAccount:
        if other == 0:  # so that sum(accounts) works without a start value
            return self
        return NotImplemented

    def __neg__(self) -> TimeAccount:
        negated = (-v for v in _summed_values(self))
        reasons = tuple((k, -v) for k, v in self.loss_by_reason)
        return TimeAccount(*negated, reasons)  # type: ignore[call-arg]

    def __sub__(self, other: TimeAccount) -> TimeAccount:
        return self + (-other)

    # -- the time model ----------------------------------------------------------------------
    @property
    def all_time_ms(self) -> int:
        return (
            self.planned_production_time_ms
            + self.planned_downtime_ms
            + self.not_scheduled_ms
            + self.no_data_ms
        )

    @property
    def planned_production_time_ms(self) -> int:
        return self.running_ms + self.downtime_ms

    @property
    def downtime_ms(self) -> int:
        """Availability loss: every stop inside planned production time."""
        return self.setup_ms + self.unplanned_downtime_ms + self.blocked_ms + self.starved_ms

    @property
    def run_time_ms(self) -> int:
        return self.running_ms

    @property
    def good_count(self) -> int:
        return self.total_count - self.reject_count

    @property
    def fully_productive_time_ms(self) -> float:
        return (self.ideal_time_us - self.reject_ideal_time_us) / 1000

    def downtime_by_reason(self) -> dict[str, int]:
        return dict(self.loss_by_reason)

    # -- figures -----------------------------------------------------------------------------
    @property
    def availability(self) -> float | None:
        return _ratio(self.run_time_ms, self.planned_production_time_ms)

    @property
    def performance(self) -> float | None:
        return _ratio(self.ideal_time_us / 1000, self.run_time_ms)

    @property
    def quality(self) -> float | None:
        return _ratio(self.good_count, self.total_count)

    @property
    def oee(self) -> float | None:
        a, p, q = self.availability, self.performance, self.quality
        return None if a is None or p is None or q is None else a * p * q

    @property
    def loading(self) -> float | None:
        return _ratio(self.planned_production_time_ms, self.all_time_ms)

    @property
    def teep(self) -> float | None:
        oee, loading = self.oee, self.loading
        return None if oee is None or loading is None else oee * loading

    @property
    def mtbf_ms(self) -> float | None:
        return _ratio(self.run_time_ms, self.failures)

    @property
    def mttr_ms(self) -> float | None:
        return _ratio(self.unplanned_downtime_ms, self.failures)


#: Every numeric field of ``TimeAccount`` in declaration order (all but the reasons, last).
SUMMED_FIELDS = tuple(f.name for f in fields(TimeAccount) if f.name != "loss_by_reason")
_summed_values = attrgetter(*SUMMED_FIELDS)


@dataclass(frozen=True, slots=True)
class CalendarSegment:
    start_ms: int
    end_ms: int
    scheduled: bool
    in_break: bool


def calendar_segments(
    shifts: Sequence[ShiftInstance] | None, start_ms: int, end_ms: int
) -> tuple[CalendarSegment, ...]:
    """[start_ms, end_ms) cut into outside-shift, shift and break pieces. ``None``: no calendar,
    all time is scheduled."""
    if end_ms <= start_ms:
        return ()
    if shifts is None:
        return (CalendarSegment(start_ms, end_ms, True, False),)
    cuts: list[tuple[int, int, bool, bool]] = []
    for shift in shifts:
        cursor = shift.start_ms
        for b_start, b_end in shift.breaks:
            cuts.append((cursor, b_start, True, False))
            cuts.append((b_start, b_end, True, True))
            cursor = b_end
        cuts.append((cursor, shift.end_ms, True, False))
    segments: list[CalendarSegment] = []
    cursor = start_ms
    for cut_start, cut_end, scheduled, in_break in sorted(cuts):
        s, e = max(cut_start, cursor), min(cut_end, end_ms)
        if e <= s:
            continue
        if s > cursor:
            segments.append(CalendarSegment(cursor, s, False, False))
        segments.append(CalendarSegment(s, e, scheduled, in_break))
        cursor = e
    if cursor < end_ms:
        segments.append(CalendarSegment(cursor, end_ms, False, False))
    return tuple(segments)


def interval_contribution(
    interval: StateInterval,
    segments: Sequence[CalendarSegment],
    small_stop_ms: int = DEFAULT_SMALL_STOP_MS,
) -> TimeAccount:
    """What one interval adds to an account over the span ``segments`` cover (they must be
    contiguous and sorted). An open interval is cut at the end of the span."""
    if not segments:
        return TimeAccount()
    span_start, span_end = segments[0].start_ms, segments[-1].end_ms
    end = span_end if interval.end_ms is None else min(interval.end_ms, span_end)
    start = max(interval.start_ms, span_start)
    if end <= start:
        return TimeAccount()
    # Smallness is judged on the whole stop, so every piece of one stop is classified alike.
    duration = interval.duration_ms
    is_small = duration is not None and duration < small_stop_ms
    times: dict[str, int] = {}
    reasons: dict[str, int] = {}
    small = failures = 0
    starts = [seg.start_ms for seg in segments]
    for seg in segments[max(bisect_right(starts, start) - 1, 0) : bisect_left(starts, end)]:
        ms = min(end, seg.end_ms) - max(start, seg.start_ms)
        if ms <= 0:
            continue
        kind = accounted_type(
            interval.state_type, interval.mode, scheduled=seg.scheduled, in_break=seg.in_break
        )
        name = _TYPE_FIELD[kind]
        times[name] = times.get(name, 0) + ms
        if kind.is_availability_loss:
            key = interval.reason_id or UNASSIGNED_REASON
            reasons[key] = reasons.get(key, 0) + ms
            if is_small and kind in _SMALL_STOP_TYPES:
                small += ms
        if kind.is_failure and seg.start_ms <= interval.start_ms < seg.end_ms:
            failures = 1
    return TimeAccount(
        **times,
        small_stop_ms=small,
        failures=failures,
        loss_by_reason=tuple(sorted(reasons.items())),
    )


def count_contribution(count: CountRecord, cycle_ms: Fraction | None) -> TimeAccount:
    """What one count record adds; ideal time is rounded to the µs per record, so sums stay
    exact integers whichever way records are grouped."""
    startup_rejects = count.reject if count.startup else 0
    if cycle_ms is None:
        return TimeAccount(
            total_count=count.total,
            reject_count=count.reject,
            startup_reject_count=startup_rejects,
            unrated_count=count.total,
        )
    cycle_us = cycle_ms * 1000
    return TimeAccount(
        total_count=count.total,
        reject_count=count.reject,
        startup_reject_count=startup_rejects,
        ideal_time_us=round(count.total * cycle_us),
        reject_ideal_time_us=round(count.reject * cycle_us),
        startup_reject_ideal_time_us=round(startup_rejects * cycle_us),
    )


def account_for(
    intervals: Iterable[StateInterval],
    counts: Iterable[CountRecord],
    start_ms: int,
    end_ms: int,
    *,
    shifts: Sequence[ShiftInstance] | None = None,
    ideal_cycle_ms: CycleTimeLookup | None = None,
    small_stop_ms: int = DEFAULT_SMALL_STOP_MS,
) -> TimeAccount:
    """The account of ONE asset over [start_ms, end_ms), intervals clipped exactly at the ends;
    counts are taken when ``start_ms <= ts_ms < end_ms``. For a line or a site, sum the accounts
    of its assets. Pass a period that ends no later than now: open intervals are cut at its end."""
    if end_ms < start_ms:
        raise DomainError(f"period end {end_ms} is before its start {start_ms}")
    segments = calendar_segments(shifts, start_ms, end_ms)
    account = TimeAccount()
    asset: AssetPath | None = None
    for interval in intervals:
        if asset is None:
            asset = interval.asset
        elif interval.asset != asset:
            raise DomainError(f"account_for takes one asset: got {asset} and {interval.asset}")
        account += interval_contribution(interval, segments, small_stop_ms)
    covered = account.all_time_ms
    if covered > end_ms - start_ms:
        raise DomainError(f"state intervals of {asset} overlap in [{start_ms}, {end_ms})")
    for count in counts:
        if start_ms <= count.ts_ms < end_ms:
            cycle = None if ideal_cycle_ms is None else ideal_cycle_ms(count.asset, count.ts_ms)
            account += count_contribution(count, cycle)
    return replace(account, no_data_ms=end_ms - start_ms - covered)


def split_by(
    boundaries: Sequence[int],
    intervals: Iterable[StateInterval],
    counts: Iterable[CountRecord],
    *,
    shifts: Sequence[ShiftInstance] | None = None,
    ideal_cycle_ms: CycleTimeLookup | None = None,
    small_stop_ms: int = DEFAULT_SMALL_STOP_MS,
) -> tuple[TimeAccount, ...]:
    """One account per [boundaries[i], boundaries[i+1]) — e.g. shift starts/ends or
    ``calendar.day_boundaries`` — whose sum is exactly the account of the whole span."""
    if any(b >= a for a, b in zip(boundaries[1:], boundaries, strict=False)):
        raise DomainError("boundaries must be strictly increasing")
    ordered = sorted(intervals, key=lambda iv: iv.start_ms)
    starts = [iv.start_ms for iv in ordered]
    ordered_counts = sorted(counts, key=lambda c: c.ts_ms)
    count_ts = [c.ts_ms for c in ordered_counts]
    accounts = []
    for a, b in pairwise(boundaries):
        # Intervals of one asset do not overlap, so only the one before ``a`` can reach into it.
        first = max(bisect_right(starts, a) - 1, 0)
        chosen = ordered[first : bisect_left(starts, b)]
        in_period = ordered_counts[bisect_left(count_ts, a) : bisect_left(count_ts, b)]
        accounts.append(
            account_for(
                chosen,
                in_period,
                a,
                b,
                shifts=shifts,
                ideal_cycle_ms=ideal_cycle_ms,
                small_stop_ms=small_stop_ms,
            )
        )
    return tuple(accounts)
