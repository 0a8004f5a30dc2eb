"""Shift calendars: recurring shifts, breaks, holidays, DST (7 h and 9 h night shifts)."""

from __future__ import annotations

import itertools
from datetime import date, time
from zoneinfo import ZoneInfo

import pytest
from domain_fixtures import PRAGUE, at

from andon.domain import BreakPattern, DomainError, ShiftCalendar, ShiftPattern, day_boundaries
from andon.domain.calendar import hour_bucket_start, local_to_utc_ms

HOUR = 3_600_000
EVERY_DAY = frozenset(range(7))
THREE_SHIFTS = (
    ShiftPattern("Morning", EVERY_DAY, time(6), time(14), (BreakPattern(time(10), time(10, 30)),)),
    ShiftPattern("Afternoon", EVERY_DAY, time(14), time(22)),
    ShiftPattern("Night", EVERY_DAY, time(22), time(6), (BreakPattern(time(2), time(2, 30)),)),
)


@pytest.mark.parametrize(
    ("zone", "spring", "fall"),
    [
        ("Europe/Prague", date(2024, 3, 30), date(2024, 10, 26)),
        ("America/Chicago", date(2024, 3, 9), date(2024, 11, 2)),
    ],
)
def test_night_shift_lasts_7h_at_spring_forward_and_9h_at_fall_back(
    zone: str, spring: date, fall: date
) -> None:
    calendar = ShiftCalendar(zone, THREE_SHIFTS)
    z = ZoneInfo(zone)
    for day, hours in ((spring, 7), (fall, 9), (date(2024, 6, 1), 8)):
        shifts = calendar.shifts_between(
            local_to_utc_ms(day, time(12), z), local_to_utc_ms(day, time(23), z)
        )
        (night,) = [s for s in shifts if s.name == "Night"]
        assert night.duration_ms == hours * HOUR
        # The 02:00 break exists every night; in the spring gap (02:00-03:00 skipped) it is
        # read after the gap, so it still lasts 30 minutes.
        ((b_start, b_end),) = night.breaks
        assert b_end - b_start == 30 * 60_000


def test_consecutive_shifts_tile_the_day_without_gaps() -> None:
    calendar = ShiftCalendar("Europe/Prague", THREE_SHIFTS)
    shifts = calendar.shifts_between(at(date(2024, 3, 29), 6), at(date(2024, 4, 2), 6))
    assert all(a.end_ms == b.start_ms for a, b in itertools.pairwise(shifts))
    assert shifts[0].key == "2024-03-29/Morning"


def test_holidays_and_cancelled_shifts() -> None:
    calendar = ShiftCalendar(
        "Europe/Prague",
        THREE_SHIFTS,
        holidays=frozenset({date(2024, 12, 25)}),
        cancelled=frozenset({(date(2024, 12, 24), "Night")}),
    )
    shifts = calendar.shifts_between(at(date(2024, 12, 24), 0), at(date(2024, 12, 27), 0))
    keys = [s.key for s in shifts]
    assert "2024-12-24/Night" not in keys
    assert not [k for k in keys if k.startswith("2024-12-25")]
    assert "2024-12-24/Afternoon" in keys
    assert "2024-12-26/Morning" in keys


def test_invalid_patterns_are_rejected() -> None:
    with pytest.raises(DomainError, match="inside the shift"):
        ShiftPattern("Day", EVERY_DAY, time(6), time(14), (BreakPattern(time(13), time(15)),))
    with pytest.raises(DomainError, match="weekdays"):
        ShiftPattern("Day", frozenset({7}), time(6), time(14))
    with pytest.raises(DomainError, match="unknown timezone"):
        ShiftCalendar("Mars/Olympus", ())
    overlapping = ShiftCalendar(
        "Europe/Prague",
        (
            ShiftPattern("A", EVERY_DAY, time(6), time(14)),
            ShiftPattern("B", EVERY_DAY, time(13), time(20)),
        ),
    )
    with pytest.raises(DomainError, match="overlap"):
        overlapping.shifts_between(at(date(2024, 6, 3), 0), at(date(2024, 6, 4), 0))


def test_ambiguous_local_time_is_the_first_occurrence() -> None:
    first = local_to_utc_ms(date(2024, 10, 27), time(2, 30), PRAGUE)
    assert first == local_to_utc_ms(date(2024, 10, 27), time(0), PRAGUE) + int(2.5 * HOUR)


def test_day_and_hour_boundaries_follow_the_site_clock() -> None:
    bounds = day_boundaries(at(date(2024, 3, 30), 12), at(date(2024, 4, 1), 12), PRAGUE)
    assert bounds[2] - bounds[1] == 23 * HOUR  # the spring-forward day
    kolkata = ZoneInfo("Asia/Kolkata")
    start = local_to_utc_ms(date(2024, 6, 3), time(10), kolkata)
    assert hour_bucket_start(start + 59 * 60_000, kolkata) == start
