"""Shift calendars per site: weekly patterns in local time, breaks, holidays, resolved to UTC.

Local wall-clock times are turned into UTC instants with ``fold=0``: an ambiguous time (it occurs
twice when clocks go back) is its first occurrence; a nonexistent time (skipped when clocks go
forward) is read with the offset in force before the change, i.e. it lands after the gap (02:30
on a spring-forward night in Europe/Prague becomes 03:30 CEST). A shift keeps its wall-clock
start and end, so a 22:00-06:00 night shift lasts 7 h across spring-forward and 9 h across
fall-back: the plant works by the clock on the wall.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from andon.domain.errors import DomainError

__all__ = [
    "HOUR_MS",
    "BreakPattern",
    "ShiftCalendar",
    "ShiftInstance",
    "ShiftPattern",
    "day_boundaries",
    "hour_bucket",
    "hour_bucket_start",
    "local_to_utc_ms",
    "next_hour_boundary",
    "shifts_of",
    "utc_ms_to_local",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
HOUR_MS = 3_600_000
#: Days of resolved shifts a calendar remembers (years of history fit; cleared when full).
_DAY_MEMO_LIMIT = 4096


def local_to_utc_ms(day: date, at: time, zone: ZoneInfo) -> int:
    """UTC epoch ms of a wall-clock time at a site (``fold=0``, see the module docstring)."""
    local = datetime.combine(day, at.replace(fold=0), tzinfo=zone)
    return (local.astimezone(UTC) - _EPOCH) // _MS


def utc_ms_to_local(ts_ms: int, zone: ZoneInfo) -> datetime:
    return (_EPOCH + ts_ms * _MS).astimezone(zone)


@dataclass(frozen=True, slots=True)
class BreakPattern:
    """A break (planned downtime) in local time; times before the shift's start are on the
    next day, so a 02:00 break belongs inside a 22:00-06:00 shift."""

    start: time
    end: time
    name: str = "Break"


@dataclass(frozen=True, slots=True)
class ShiftPattern:
    """A shift on the given weekdays (0 = Monday) from ``start`` to ``end`` local time; an end at or
    before the start means the shift ends the next day."""

    name: str
    weekdays: frozenset[int]
    start: time
    end: time
    breaks: tuple[BreakPattern, ...] = ()

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise DomainError("a shift needs a name")
        if not self.weekdays or not self.weekdays <= frozenset(range(7)):
            raise DomainError(f"shift {self.name!r}: weekdays must be a non-empty subset of 0..6")
        shift_len = _minutes_after(self.start, self.end) or 24 * 60
        previous_end = 0
        for brk in sorted(self.breaks, key=lambda b: _minutes_after(self.start, b.start)):
            offset = _minutes_after(self.start, brk.start)
            length = _minutes_after(brk.start, brk.end)
            if length == 0 or offset + length > shift_len or offset < previous_end:
                raise DomainError(
                    f"shift {self.name!r}: break {brk.name!r} {brk.start}-{brk.end} must be "
                    "non-empty, inside the shift and not overlap another break"
                )
            previous_end = offset + length


def _minutes_after(a: time, b: time) -> int:
    """Minutes from wall time a to the next wall time b (0 if equal)."""
    return ((b.hour * 60 + b.minute) - (a.hour * 60 + a.minute)) % (24 * 60)


@dataclass(frozen=True, slots=True)
class ShiftInstance:
    """One concrete shift in UTC; ``day`` is the local date it starts on (the production day)."""

    name: str
    day: date
    start_ms: int
    end_ms: int
    breaks: tuple[tuple[int, int], ...] = ()
    #: ``key``, made once: every count's shift rollup is labelled with it.
    _key: str = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_key", f"{self.day.isoformat()}/{self.name}")

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms

    @property
    def key(self) -> str:
        return self._key


@dataclass(frozen=True, slots=True)
class ShiftCalendar:
    """The shift calendar of one site. ``holidays``: local dates on which no shift starts;
    ``cancelled``: (date, shift name) pairs that do not take place."""

    timezone: str
    patterns: tuple[ShiftPattern, ...]
    holidays: frozenset[date] = field(default_factory=frozenset)
    cancelled: frozenset[tuple[date, str]] = field(default_factory=frozenset)
    #: Shifts resolved per local start day: every count and interval is split at shift
    #: boundaries, so the same few days are resolved again and again (a memo, not state).
    _by_day: dict[date, tuple[ShiftInstance, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )
    #: The last shift ``shifts_at`` found, alone in its span (a memo: one slot, key 0).
    _running: dict[int, tuple[ShiftInstance]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise DomainError(f"unknown timezone {self.timezone!r}") from exc
        names = [p.name for p in self.patterns]
        if len(set(names)) != len(names):
            raise DomainError("shift names must be unique within a calendar")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def shifts_starting_on(self, day: date) -> tuple[ShiftInstance, ...]:
        """The shift instances that start on local date ``day``, by start."""
        found = self._by_day.get(day)
        if found is None:
            if len(self._by_day) >= _DAY_MEMO_LIMIT:
                self._by_day.clear()
            found = self._by_day[day] = self._resolve_day(day)
        return found

    def _resolve_day(self, day: date) -> tuple[ShiftInstance, ...]:
        if day in self.holidays:
            return ()
        zone = self.zone
        found = [
            _resolve(pattern, day, zone)
            for pattern in self.patterns
            if day.weekday() in pattern.weekdays and (day, pattern.name) not in self.cancelled
        ]
        return tuple(sorted(found, key=lambda s: s.start_ms))

    def shifts_between(self, start_ms: int, end_ms: int) -> tuple[ShiftInstance, ...]:
        """Every shift instance overlapping [start_ms, end_ms), whole (not clipped), by start."""
        if end_ms <= start_ms:
            return ()
        zone = self.zone
        # A shift lasts at most a day, so one local day of margin either side finds them all.
        first = utc_ms_to_local(start_ms, zone).date() - timedelta(days=1)
        last = utc_ms_to_local(end_ms, zone).date() + timedelta(days=1)
        found: list[ShiftInstance] = []
        day = first
        while day <= last:
            found.extend(
                shift
                for shift in self.shifts_starting_on(day)
                if shift.end_ms > start_ms and shift.start_ms < end_ms
            )
            day += timedelta(days=1)
        found.sort(key=lambda s: s.start_ms)
        for a, b in pairwise(found):
            if b.start_ms < a.end_ms:
                raise DomainError(f"shifts {a.key} and {b.key} overlap")
        return tuple(found)

    def shifts_at(self, ts_ms: int) -> tuple[ShiftInstance, ...]:
        """``shifts_between(ts_ms, ts_ms + 1)``: the shift running at that instant, if any.

        Every count is put in the shift it falls in, so the shift found is remembered for the
        rest of its span, once no other shift overlaps it (overlapping shifts still raise)."""
        running = self._running.get(0)
        if running is not None and running[0].start_ms <= ts_ms < running[0].end_ms:
            return running
        found = self.shifts_between(ts_ms, ts_ms + 1)
        if len(found) == 1:
            shift = found[0]
            try:
                alone = self.shifts_between(shift.start_ms, shift.end_ms) == found
            except DomainError:  # it overlaps another shift: not remembered
                alone = False
            if alone:
                self._running[0] = (shift,)
        return found


def _resolve(pattern: ShiftPattern, day: date, zone: ZoneInfo) -> ShiftInstance:
    def at(t: time) -> int:
        next_day = t < pattern.start
        return local_to_utc_ms(day + timedelta(days=1) if next_day else day, t, zone)

    start = local_to_utc_ms(day, pattern.start, zone)
    end_day = day + timedelta(days=1) if pattern.end <= pattern.start else day
    end = local_to_utc_ms(end_day, pattern.end, zone)
    breaks = []
    for brk in pattern.breaks:
        b_start = at(brk.start)
        b_end = at(brk.end)
        # A break ending at the shift start time means it ends with the shift (a 24 h shift).
        if brk.end == pattern.start:
            b_end = end
        b_start, b_end = max(b_start, start), min(b_end, end)  # a break in a DST gap shrinks
        if b_end > b_start:
            breaks.append((b_start, b_end))
    return ShiftInstance(pattern.name, day, start, end, tuple(sorted(breaks)))


def day_boundaries(start_ms: int, end_ms: int, zone: ZoneInfo) -> tuple[int, ...]:
    """Local midnights in (start_ms, end_ms), with start and end themselves: split a period by
    site day (days are 23 or 25 h long on DST change days)."""
    bounds = [start_ms]
    day = utc_ms_to_local(start_ms, zone).date() + timedelta(days=1)
    while (midnight := local_to_utc_ms(day, time(0), zone)) < end_ms:
        if midnight > bounds[-1]:
            bounds.append(midnight)
        day += timedelta(days=1)
    if end_ms > bounds[-1]:
        bounds.append(end_ms)
    return tuple(bounds)


#: Per zone, the last hour ``hour_bucket`` resolved: (start, end).
_last_hour: dict[ZoneInfo, tuple[int, int]] = {}


def hour_bucket(ts_ms: int, zone: ZoneInfo) -> tuple[int, int]:
    """(start, end) of the rollup bucket of ``ts_ms``: from the last local hour boundary at or
    before it to the next one after it (``hour_bucket_start``, ``next_hour_boundary``).

    Rollups put every count in its hour, so the bucket found is remembered: buckets tile the
    time line, so every instant of [start, end) has this one."""
    last = _last_hour.get(zone)
    if last is not None and last[0] <= ts_ms < last[1]:
        return last
    start = hour_bucket_start(ts_ms, zone)
    found = (start, next_hour_boundary(start, zone))
    _last_hour[zone] = found
    return found


def _offset_ms(ts_ms: int, zone: ZoneInfo) -> int:
    offset = utc_ms_to_local(ts_ms, zone).utcoffset()
    return 0 if offset is None else offset // _MS


def _offset_change(after_ms: int, until_ms: int, zone: ZoneInfo) -> int:
    """The instant in (after_ms, until_ms] from which the UTC offset is that of ``until_ms``
    (the offsets at the two ends differ; zones change their offset months apart, so there is
    one change between instants less than two hours apart)."""
    new = _offset_ms(until_ms, zone)
    low, high = after_ms, until_ms  # offset(low) != new, offset(high) == new
    while high - low > 1:
        middle = (low + high) // 2
        if _offset_ms(middle, zone) == new:
            high = middle
        else:
            low = middle
    return high


def hour_bucket_start(ts_ms: int, zone: ZoneInfo) -> int:
    """The last local hour boundary at or before ``ts_ms``: an instant whose local time is on
    the hour. Equal to the UTC hour for whole-hour offsets, shifted by 30 or 45 minutes for
    sites such as Asia/Kolkata or Asia/Kathmandu. Where a clock change is not a whole hour
    (Australia/Lord_Howe moves by 30 minutes), the hour around it is 30 or 90 minutes long."""
    offset_ms = _offset_ms(ts_ms, zone)
    candidate = (ts_ms + offset_ms) // HOUR_MS * HOUR_MS - offset_ms
    if _offset_ms(candidate, zone) == offset_ms:
        return candidate
    # The clock changed after the candidate: it is not on the hour in the offset it had then.
    # The last boundary is the last one under the old offset, before the change.
    return hour_bucket_start(_offset_change(candidate, ts_ms, zone) - 1, zone)


def next_hour_boundary(ts_ms: int, zone: ZoneInfo) -> int:
    """The first local hour boundary after ``ts_ms`` (see ``hour_bucket_start``)."""
    offset_ms = _offset_ms(ts_ms, zone)
    candidate = (ts_ms + offset_ms) // HOUR_MS * HOUR_MS + HOUR_MS - offset_ms
    if _offset_ms(candidate, zone) == offset_ms:
        return candidate
    # The clock changed before the candidate: the first boundary is the first one on the
    # new clock from the change on (the change itself when it lands on the hour).
    change = _offset_change(ts_ms, candidate, zone)
    new_offset = _offset_ms(change, zone)
    return -((-(change + new_offset)) // HOUR_MS) * HOUR_MS - new_offset


def shifts_of(
    calendars: Iterable[ShiftCalendar], start_ms: int, end_ms: int
) -> tuple[ShiftInstance, ...]:
    """Shift instances of several calendars, by start (for a multi-site view)."""
    found = [s for c in calendars for s in c.shifts_between(start_ms, end_ms)]
    return tuple(sorted(found, key=lambda s: s.start_ms))
