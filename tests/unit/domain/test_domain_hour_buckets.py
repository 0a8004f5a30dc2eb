"""Local hour buckets around clock changes, including zones whose offset or clock change is not
a whole hour (Australia/Lord_Howe moves its clock by 30 minutes: an hour bucket there is 30 or
90 minutes long around the change, and rolling up over it once looped forever)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from domain_fixtures import FILLER, RUNNING, STATE_MAP, STOPPED

from andon.domain import BucketKind, IntervalBuilder, RollupBuilder, StateSample, account_for
from andon.domain.calendar import (
    hour_bucket,
    hour_bucket_start,
    next_hour_boundary,
    utc_ms_to_local,
)

MIN = 60_000
HOUR = 60 * MIN
YEAR_START = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)
ZONES = [
    "UTC",
    "Europe/Prague",
    "America/Chicago",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "America/St_Johns",
    "America/Santiago",
    "Australia/Adelaide",
    "Australia/Lord_Howe",
]


def _offset(ts_ms: int, zone: ZoneInfo) -> object:
    return utc_ms_to_local(ts_ms, zone).utcoffset()


def _changes(zone: ZoneInfo) -> list[int]:
    """The minutes of 2024 at which the zone's UTC offset changes (found hour by hour)."""
    found = []
    for h in range(366 * 24):
        a, b = YEAR_START + h * HOUR, YEAR_START + (h + 1) * HOUR
        if _offset(a, zone) != _offset(b, zone):
            found.extend(
                m for m in range(a, b + 1, MIN) if _offset(m - MIN, zone) != _offset(m, zone)
            )
    return found


def _on_the_hour(ts_ms: int, zone: ZoneInfo) -> bool:
    local = utc_ms_to_local(ts_ms, zone)
    return local.minute == 0 and local.second == 0 and local.microsecond == 0


def _windows(zone: ZoneInfo) -> list[tuple[int, int]]:
    changes = _changes(zone)
    middle = YEAR_START + 180 * 24 * HOUR + 17 * MIN  # an ordinary day, off the hour
    return [(c - 3 * HOUR, c + 3 * HOUR) for c in changes] + [(middle, middle + 6 * HOUR)]


@pytest.mark.parametrize("name", ZONES)
def test_hour_buckets_are_exactly_the_spans_between_local_times_on_the_hour(name: str) -> None:
    zone = ZoneInfo(name)
    for low, high in _windows(zone):
        # Every minute whose local time is on the hour, and nothing else, is a boundary.
        expected = [m for m in range(low - low % MIN, high, MIN) if _on_the_hour(m, zone)]
        walked = []
        cursor = hour_bucket_start(low, zone)
        while cursor < high:
            assert _on_the_hour(cursor, zone)
            following = next_hour_boundary(cursor, zone)
            assert 30 * MIN <= following - cursor <= 90 * MIN
            walked.append(cursor)
            cursor = following
        assert [b for b in walked if b >= low - low % MIN] == expected
        # Every instant lies in the bucket from the last boundary to the next one, whatever
        # order instants are asked in (``hour_bucket`` remembers the last bucket of a zone).
        instants = list(range(low, high, 7 * MIN + 13))
        random.Random(name).shuffle(instants)
        for ts in instants:
            start = max(b for b in [*walked, cursor] if b <= ts)
            end = min(b for b in [*walked, cursor] if b > ts)
            assert hour_bucket_start(ts, zone) == start
            assert next_hour_boundary(ts, zone) == end
            assert hour_bucket(ts, zone) == (start, end)


def test_lord_howe_has_a_ninety_minute_hour_when_the_clock_goes_back_half_an_hour() -> None:
    zone = ZoneInfo("Australia/Lord_Howe")
    back = next(c for c in _changes(zone) if utc_ms_to_local(c, zone).month == 4)
    start, end = hour_bucket(back, zone)
    assert end - start == 90 * MIN
    assert (utc_ms_to_local(start, zone).hour, utc_ms_to_local(end, zone).hour) == (1, 2)


@pytest.mark.parametrize("name", ["Australia/Lord_Howe", "Asia/Kathmandu", "Europe/Prague"])
def test_rollups_over_a_clock_change_equal_the_account_from_raw_data(name: str) -> None:
    zone = ZoneInfo(name)
    for change in _changes(zone) or [YEAR_START + 100 * 24 * HOUR]:
        start = hour_bucket_start(change - 5 * HOUR, zone)
        end = next_hour_boundary(change + 5 * HOUR, zone)
        builder = IntervalBuilder(FILLER, STATE_MAP)
        rollups = RollupBuilder(lambda _a: zone, lambda _a: None)
        codes = [RUNNING, STOPPED, RUNNING, STOPPED, RUNNING]
        samples = [StateSample(start + i * 97 * MIN, c) for i, c in enumerate(codes)]
        rollups.apply_intervals(builder.apply([*samples, StateSample(end, STOPPED)], []))
        closed = [iv for iv in builder.intervals if iv.end_ms is not None]
        raw = account_for(closed, [], start, end)
        assert rollups.total(FILLER, BucketKind.HOUR, start, end) == raw
        hours = rollups.rollups(FILLER, BucketKind.HOUR, start, end)
        assert sum(r.key.end_ms - r.key.start_ms for r in hours) == end - start
