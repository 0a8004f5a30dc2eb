"""Interval derivation: order independence (late data equals live data), reasons, splits."""

from __future__ import annotations

import itertools

import pytest
from domain_fixtures import FAULT, FILLER, RUNNING, STATE_MAP, STOPPED, apply_changes
from hypothesis import given, settings
from hypothesis import strategies as st

from andon.domain import (
    CHANGEOVER,
    PRODUCTION,
    DomainError,
    IntervalBuilder,
    ModeSample,
    StateInterval,
    StateSample,
    StateType,
)

samples_strategy = st.dictionaries(
    st.integers(0, 10_000),
    st.sampled_from([RUNNING, STOPPED, FAULT, 99]),
    min_size=1,
    max_size=40,
).map(lambda d: [StateSample(ts, code) for ts, code in d.items()])
modes_strategy = st.dictionaries(
    st.integers(0, 10_000), st.sampled_from([PRODUCTION, CHANGEOVER]), max_size=5
).map(lambda d: [ModeSample(ts, mode) for ts, mode in d.items()])


@settings(max_examples=200, deadline=None)
@given(samples=samples_strategy, modes=modes_strategy, data=st.data())
def test_any_order_and_chunking_gives_the_live_result(
    samples: list[StateSample], modes: list[ModeSample], data: st.DataObject
) -> None:
    live = IntervalBuilder(FILLER, STATE_MAP)
    live.apply(sorted(samples, key=lambda s: s.ts_ms), sorted(modes, key=lambda m: m.ts_ms))

    shuffled = data.draw(st.permutations(samples))
    shuffled_modes = data.draw(st.permutations(modes))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(shuffled)), max_size=6)))
    late = IntervalBuilder(FILLER, STATE_MAP)
    store: set[StateInterval] = set()
    previous = 0
    for i, cut in enumerate([*cuts, len(shuffled)]):
        chunk_modes = shuffled_modes if i == 0 else []
        apply_changes(late.apply(shuffled[previous:cut], chunk_modes), store)
        previous = cut
    # Duplicates (a replayed backlog) change nothing.
    assert late.apply(shuffled[: len(shuffled) // 2]).is_empty

    assert late.intervals == live.intervals
    assert store == set(live.intervals)
    intervals = live.intervals
    assert all(a.end_ms == b.start_ms for a, b in itertools.pairwise(intervals))
    assert intervals[-1].end_ms is None
    assert intervals[0].start_ms == min(s.ts_ms for s in samples)


def test_unknown_code_is_an_explicit_unplanned_stop() -> None:
    builder = IntervalBuilder(FILLER, STATE_MAP)
    builder.apply([StateSample(0, 1234)])
    (interval,) = builder.intervals
    assert interval.state_type is StateType.UNPLANNED_DOWNTIME
    assert STATE_MAP.resolve(1234).name == "Unknown (1234)"


def test_conflicting_sample_rejects_the_whole_batch() -> None:
    builder = IntervalBuilder(FILLER, STATE_MAP)
    builder.apply([StateSample(0, RUNNING)])
    with pytest.raises(DomainError, match="conflicting state code at 0"):
        builder.apply([StateSample(50, STOPPED), StateSample(0, FAULT)])
    assert [iv.code for iv in builder.intervals] == [RUNNING]


def test_reason_survives_late_data_that_keeps_or_moves_the_start() -> None:
    builder = IntervalBuilder(FILLER, STATE_MAP)
    builder.apply([StateSample(0, RUNNING), StateSample(100, STOPPED), StateSample(300, RUNNING)])
    builder.assign_reason(100, "no-operator")
    # A late sample splits the stop: the reason stays on the part that starts at 100.
    builder.apply([StateSample(200, FAULT)])
    assert [(iv.start_ms, iv.reason_id) for iv in builder.intervals] == [
        (0, None),
        (100, "no-operator"),
        (200, "jam"),
        (300, None),
    ]
    # A late sample shows the same stop began earlier: the reason moves with it.
    changes = builder.apply([StateSample(50, STOPPED)])
    assert builder.interval_at(50) == StateInterval(
        FILLER, 50, 200, STOPPED, StateType.UNPLANNED_DOWNTIME, "no-operator", PRODUCTION
    )
    assert not changes.dropped_reasons


def test_reason_dropped_when_the_state_turns_out_different() -> None:
    builder = IntervalBuilder(FILLER, STATE_MAP)
    # The interval at 80 starts with a mode change, so its code comes from the sample at 50.
    builder.apply([StateSample(0, RUNNING), StateSample(50, STOPPED)], [ModeSample(80, CHANGEOVER)])
    builder.assign_reason(80, "cleaning")
    # Late data: the machine was in a fault from 70, so the stop at 80 was not "Stopped".
    changes = builder.apply([StateSample(70, FAULT)])
    assert changes.dropped_reasons == ((80, "cleaning"),)
    assert builder.interval_at(80).reason_id == "jam"  # type: ignore[union-attr]


def test_assign_reason_needs_a_stop_start() -> None:
    builder = IntervalBuilder(FILLER, STATE_MAP)
    builder.apply([StateSample(0, RUNNING), StateSample(100, STOPPED)])
    with pytest.raises(DomainError, match="no state interval starts at 50"):
        builder.assign_reason(50, "x")
    with pytest.raises(DomainError, match="reasons apply to stops"):
        builder.assign_reason(0, "x")


def test_split_downtime_and_give_each_part_a_reason() -> None:
    builder = IntervalBuilder(FILLER, STATE_MAP)
    builder.apply([StateSample(0, STOPPED), StateSample(1000, RUNNING)])
    builder.assign_reason(0, "waiting")
    changes = builder.split(400)
    assert {iv.start_ms for iv in changes.added} == {0, 400}
    builder.assign_reason(400, "repair")
    assert [(iv.start_ms, iv.end_ms, iv.reason_id) for iv in builder.intervals] == [
        (0, 400, "waiting"),
        (400, 1000, "repair"),
        (1000, None, None),
    ]
    # The manual split survives later data.
    builder.apply([StateSample(2000, STOPPED)])
    assert builder.interval_at(500).start_ms == 400  # type: ignore[union-attr]
    with pytest.raises(DomainError, match="no interval to split"):
        builder.split(400)


def test_a_split_can_be_merged_back_and_keeps_the_first_reason() -> None:
    builder = IntervalBuilder(FILLER, STATE_MAP)
    builder.apply([StateSample(0, STOPPED), StateSample(1000, RUNNING)])
    builder.split(400)
    builder.assign_reason(0, "waiting")
    builder.assign_reason(400, "repair")
    changes = builder.merge(400)
    assert [(iv.start_ms, iv.end_ms) for iv in changes.removed] == [(0, 400), (400, 1000)]
    assert [(iv.start_ms, iv.end_ms, iv.reason_id) for iv in builder.intervals] == [
        (0, 1000, "waiting"),
        (1000, None, None),
    ]
    with pytest.raises(DomainError, match="no manual split at 400"):
        builder.merge(400)
    with pytest.raises(DomainError, match="no manual split at 1000"):
        builder.merge(1000)


def test_mode_changes_start_intervals_and_samples_before_any_state_give_none() -> None:
    builder = IntervalBuilder(FILLER, STATE_MAP)
    builder.apply(modes=[ModeSample(10, CHANGEOVER)])
    assert builder.intervals == ()
    builder.apply([StateSample(50, STOPPED)], [ModeSample(80, PRODUCTION)])
    assert [(iv.start_ms, iv.mode.name) for iv in builder.intervals] == [
        (50, "Changeover"),
        (80, "Production"),
    ]
