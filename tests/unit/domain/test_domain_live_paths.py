"""The shortcuts live data takes, each equal to the general computation it stands for: a state
sample after everything an interval builder knows, the shift and the hour of a count, the
counter's plausibility bound in integers."""

from __future__ import annotations

from datetime import date, time
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from domain_fixtures import FAULT, FILLER, RUNNING, STATE_MAP, STOPPED, apply_changes
from hypothesis import given, settings
from hypothesis import strategies as st

from andon.domain import (
    CHANGEOVER,
    PRODUCTION,
    BreakPattern,
    CounterSample,
    CountSeries,
    DomainError,
    IntervalBuilder,
    IntervalChanges,
    ModeSample,
    ShiftCalendar,
    ShiftPattern,
    StateInterval,
    StateOverride,
    StateSample,
)
from andon.domain.calendar import HOUR_MS, hour_bucket, hour_bucket_start, local_to_utc_ms
from andon.domain.counts import IMPLAUSIBLE_SLACK

events_strategy = st.lists(
    st.tuples(
        st.integers(1, 400),  # ms after the previous sample
        st.sampled_from([RUNNING, STOPPED, FAULT]),
        st.sampled_from([PRODUCTION, PRODUCTION, CHANGEOVER]),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(events=events_strategy, data=st.data())
def test_live_samples_one_by_one_give_the_intervals_of_one_batch(
    events: list[tuple[int, int, object]], data: st.DataObject
) -> None:
    """Samples in time order, one message at a time (the path live data takes, with a manual
    split, a reason and a state added by hand on the way), against all samples re-derived at
    once with the same edits."""
    samples, modes, ts = [], [], 0
    for gap, code, mode in events:
        ts += gap
        samples.append(StateSample(ts, code))
        modes.append(ModeSample(ts, mode))  # type: ignore[arg-type]
    live = IntervalBuilder(FILLER, STATE_MAP)
    store: set[StateInterval] = set()
    edit_at = data.draw(st.integers(0, len(samples) - 1))
    edits: list[tuple[str, int]] = []
    for i, (sample, mode) in enumerate(zip(samples, modes, strict=True)):
        apply_changes(live.apply([sample], [mode]), store)
        if i == edit_at:
            edits = _edit(live, store, sample.ts_ms, data)
    batch = IntervalBuilder(FILLER, STATE_MAP)
    batch.apply(samples[: edit_at + 1], modes[: edit_at + 1])
    for kind, at_ms in edits:
        _apply_edit(batch, kind, at_ms)
    batch.apply(samples[edit_at + 1 :], modes[edit_at + 1 :])
    assert live.intervals == batch.intervals
    assert store == set(live.intervals)


def _edit(
    builder: IntervalBuilder, store: set[StateInterval], last_ms: int, data: st.DataObject
) -> list[tuple[str, int]]:
    edits: list[tuple[str, int]] = []
    kind = data.draw(st.sampled_from(["none", "split", "reason", "override"]))
    current = builder.intervals[-1]
    if kind == "split" and last_ms > current.start_ms + 1:
        edits.append(("split", current.start_ms + 1))
    elif kind == "reason" and current.code != RUNNING:
        edits.append(("reason", current.start_ms))
    elif kind == "override":
        edits.append(("override", last_ms + 50))  # reaches ahead of the samples to come
    for edit_kind, at_ms in edits:
        apply_changes(_apply_edit(builder, edit_kind, at_ms), store)
    return edits


def _apply_edit(builder: IntervalBuilder, kind: str, at_ms: int) -> IntervalChanges:
    if kind == "split":
        return builder.split(at_ms)
    if kind == "reason":
        return builder.assign_reason(at_ms, "mech")
    return builder.add_override(StateOverride(at_ms, at_ms + 700, STOPPED))


def test_a_live_sample_that_changes_nothing_reports_nothing() -> None:
    builder = IntervalBuilder(FILLER, STATE_MAP)
    builder.apply([StateSample(0, RUNNING)])
    assert builder.apply([StateSample(1000, RUNNING)], [ModeSample(1000, PRODUCTION)]).is_empty
    changed = builder.apply([StateSample(2000, FAULT)])
    assert [iv.start_ms for iv in changed.removed] == [0]
    assert [(iv.start_ms, iv.end_ms) for iv in changed.added] == [(0, 2000), (2000, None)]
    assert builder.last == builder.intervals[-1]


# -- the shift and the hour of a count -----------------------------------------------------------

PRAGUE = ZoneInfo("Europe/Prague")
ALL_WEEK, WEEKDAYS = frozenset(range(7)), frozenset(range(5))
CALENDAR = ShiftCalendar(
    "Europe/Prague",
    (
        ShiftPattern("Early", ALL_WEEK, time(6), time(14), (BreakPattern(time(10), time(10, 30)),)),
        ShiftPattern("Late", WEEKDAYS, time(14), time(22)),
        ShiftPattern("Night", frozenset({4}), time(23), time(2)),
    ),
    holidays=frozenset({date(2026, 3, 30)}),
)
# The week of the spring change of clocks (29 March 2026), nights without a shift.
WEEK = (local_to_utc_ms(date(2026, 3, 26), time(0), PRAGUE), 7 * 86_400_000)


@settings(max_examples=300, deadline=None)
@given(offsets=st.lists(st.integers(0, WEEK[1]), min_size=1, max_size=30))
def test_shifts_at_is_shifts_between_one_instant(offsets: list[int]) -> None:
    calendar = ShiftCalendar(CALENDAR.timezone, CALENDAR.patterns, CALENDAR.holidays)
    for ts in sorted(WEEK[0] + o for o in offsets):  # in time order: the remembered shift helps
        assert calendar.shifts_at(ts) == calendar.shifts_between(ts, ts + 1)
        assert calendar.shifts_at(ts + 1) == calendar.shifts_between(ts + 1, ts + 2)


def test_overlapping_shifts_still_raise_for_an_instant_they_share() -> None:
    calendar = ShiftCalendar(
        "UTC",
        (
            ShiftPattern("A", ALL_WEEK, time(6), time(14)),
            ShiftPattern("B", ALL_WEEK, time(12), time(20)),
        ),
    )
    ts = local_to_utc_ms(date(2026, 3, 2), time(7), ZoneInfo("UTC"))
    assert [s.name for s in calendar.shifts_at(ts)] == ["A"]  # A overlaps B: not remembered
    with pytest.raises(DomainError):
        calendar.shifts_at(ts + 6 * HOUR_MS)


def _reference_hour(ts: int, zone: ZoneInfo) -> tuple[int, int]:
    start = hour_bucket_start(ts, zone)
    end = hour_bucket_start(start + HOUR_MS, zone)
    return start, end if end > start else start + HOUR_MS


@pytest.mark.parametrize(
    "zone", ["UTC", "Europe/Prague", "Asia/Kolkata", "Asia/Kathmandu", "America/Santiago"]
)
def test_hour_bucket_is_the_hour_of_the_instant_across_changes_of_clocks(zone: str) -> None:
    tz = ZoneInfo(zone)
    for day in (date(2026, 3, 29), date(2026, 4, 5), date(2026, 9, 6), date(2026, 10, 25)):
        start = local_to_utc_ms(day, time(0), tz) - 2 * HOUR_MS
        for ts in range(start, start + 8 * HOUR_MS, 7 * 60_000 + 13):  # in time order
            assert hour_bucket(ts, tz) == _reference_hour(ts, tz), ts


# -- the counter's plausibility bound ------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    rate=st.fractions(min_value=Fraction(1, 10**6), max_value=Fraction(10)),
    steps=st.lists(st.tuples(st.integers(1, 5_000), st.integers(0, 40)), min_size=1, max_size=20),
)
def test_the_bound_in_integers_decides_as_the_fraction_did(
    rate: Fraction, steps: list[tuple[int, int]]
) -> None:
    series = CountSeries(10**6, max_units_per_ms=rate)
    values = {0: 0}
    ts, value = 0, 0
    for gap, jump in steps:
        ts, value = ts + gap, value + jump
        values[ts] = value
    added = series.apply(CounterSample(t, v) for t, v in values.items()).added
    times = sorted(values)
    for delta in added:
        units = values[delta.end_ms] - values[delta.start_ms]
        since = times.index(delta.start_ms)
        while since > 0 and values[times[since - 1]] == values[delta.start_ms]:
            since -= 1
        believed = any(
            units <= rate * (delta.end_ms - start) + IMPLAUSIBLE_SLACK
            for start in (delta.start_ms, times[since])
        )
        assert (delta.delta, delta.dropped) == ((units, 0) if believed else (0, units))
