"""Rollups equal raw recomputation; splits of a period sum to the whole (shifts, days, DST)."""

from __future__ import annotations

import itertools
from datetime import date, time
from fractions import Fraction

from domain_fixtures import FILLER, PRAGUE, STATE_MAP, at
from hypothesis import given, settings
from hypothesis import strategies as st

from andon.domain import (
    CHANGEOVER,
    PRODUCTION,
    BreakPattern,
    BucketKind,
    IntervalBuilder,
    IntervalChanges,
    ModeSample,
    ProducedCount,
    RollupBuilder,
    ShiftCalendar,
    ShiftPattern,
    StateSample,
    TimeAccount,
    account_for,
    day_boundaries,
    split_by,
)

MIN = 60_000
EVERY_DAY = frozenset(range(7))
CALENDAR = ShiftCalendar(
    "Europe/Prague",
    (
        ShiftPattern(
            "Morning", EVERY_DAY, time(6), time(14), (BreakPattern(time(10), time(10, 30)),)
        ),
        ShiftPattern("Night", EVERY_DAY, time(22), time(6), (BreakPattern(time(2), time(2, 30)),)),
    ),
)
# Two days around the spring-forward change in Prague (2024-03-31 02:00 -> 03:00).
START = at(date(2024, 3, 30), 0)
END = at(date(2024, 4, 1), 0)


def _cycle(_asset: object, ts_ms: int) -> Fraction | None:
    return None if ts_ms % 7 == 0 else Fraction(ts_ms % 5 + 1, 3)


samples = st.dictionaries(
    st.integers(START, END - 1).map(lambda t: t - t % MIN),
    st.sampled_from([1, 2, 3, 4, 5, 10, 77]),
    min_size=1,
    max_size=25,
)
modes = st.dictionaries(
    st.integers(START, END - 1), st.sampled_from([PRODUCTION, CHANGEOVER]), max_size=3
)
counts = st.lists(
    st.tuples(st.integers(START, END - 1), st.integers(0, 500), st.integers(0, 50), st.booleans()),
    max_size=20,
).map(lambda rows: [ProducedCount(FILLER, t, n + r, r, s) for t, n, r, s in rows])


@settings(max_examples=60, deadline=None)
@given(samples=samples, modes=modes, counts=counts, data=st.data())
def test_rollups_equal_the_account_from_raw_data(
    samples: dict[int, int],
    modes: dict[int, object],
    counts: list[ProducedCount],
    data: st.DataObject,
) -> None:
    builder = IntervalBuilder(FILLER, STATE_MAP)
    rollups = RollupBuilder(lambda _a: PRAGUE, lambda _a: CALENDAR, _cycle, small_stop_ms=20 * MIN)
    state = [StateSample(t, c) for t, c in samples.items()]
    order = data.draw(st.permutations(state))
    # Late data: arbitrary chunks in arbitrary order, each change applied (with retractions).
    for i in range(0, len(order), 4):
        mode_samples = [ModeSample(t, m) for t, m in modes.items()] if i == 0 else []
        rollups.apply_intervals(builder.apply(order[i : i + 4], mode_samples))  # type: ignore[arg-type]
    rollups.apply_counts(added=counts)
    closed = [iv for iv in builder.intervals if iv.end_ms is not None]
    raw = account_for(
        closed,
        counts,
        START,
        END,
        shifts=CALENDAR.shifts_between(START, END),
        ideal_cycle_ms=_cycle,
        small_stop_ms=20 * MIN,
    )
    assert rollups.total(FILLER, BucketKind.HOUR, START, END) == raw

    shifts = CALENDAR.shifts_between(START, END)
    inside = [s for s in shifts if START <= s.start_ms < END]
    per_shift = sum(
        (
            account_for(
                closed,
                counts,
                s.start_ms,
                s.end_ms,
                shifts=(s,),
                ideal_cycle_ms=_cycle,
                small_stop_ms=20 * MIN,
            )
            for s in inside
        ),
        TimeAccount(),
    )
    assert rollups.total(FILLER, BucketKind.SHIFT, START, END) == per_shift

    # Retracting everything leaves no rollup behind.
    rollups.apply_counts(removed=counts)
    rollups.apply_intervals(IntervalChanges(removed=tuple(closed)))
    assert rollups.rollups(FILLER, BucketKind.HOUR, START, END) == ()


@settings(max_examples=60, deadline=None)
@given(
    samples=samples,
    counts=counts,
    cuts=st.lists(st.integers(START + 1, END - 1), max_size=8, unique=True),
)
def test_any_split_of_a_period_sums_to_the_whole(
    samples: dict[int, int], counts: list[ProducedCount], cuts: list[int]
) -> None:
    builder = IntervalBuilder(FILLER, STATE_MAP)
    builder.apply([StateSample(t, c) for t, c in samples.items()])
    intervals = builder.intervals
    shifts = CALENDAR.shifts_between(START, END)
    whole = account_for(intervals, counts, START, END, shifts=shifts, ideal_cycle_ms=_cycle)
    for bounds in (
        [START, *sorted(cuts), END],
        [START, *sorted({s.start_ms for s in shifts if START < s.start_ms < END}), END],
        list(day_boundaries(START, END, PRAGUE)),
    ):
        parts = split_by(bounds, intervals, counts, shifts=shifts, ideal_cycle_ms=_cycle)
        assert sum(parts, TimeAccount()) == whole
        assert [p.all_time_ms for p in parts] == [b - a for a, b in itertools.pairwise(bounds)]
