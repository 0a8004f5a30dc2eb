"""States added by hand (overrides) and pruning of the interval builder: added states replace
and cut what they cover, survive late data and come off again exactly; a pruned builder derives
late data after its floor exactly as one that kept everything."""

from __future__ import annotations

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
    StateOverride,
    StateSample,
)


def _spans(builder: IntervalBuilder) -> list[tuple[int, int | None, int, str | None]]:
    return [(iv.start_ms, iv.end_ms, iv.code, iv.reason_id) for iv in builder.intervals]


def _running_with_a_jam() -> IntervalBuilder:
    builder = IntervalBuilder(FILLER, STATE_MAP)
    builder.apply([StateSample(0, RUNNING), StateSample(600, FAULT), StateSample(800, RUNNING)])
    return builder


def test_an_added_stop_cuts_the_interval_it_falls_in_and_comes_off_exactly() -> None:
    builder = _running_with_a_jam()
    before = builder.intervals
    store = set(before)
    apply_changes(builder.add_override(StateOverride(100, 300, STOPPED)), store)
    assert _spans(builder) == [
        (0, 100, RUNNING, None),
        (100, 300, STOPPED, None),
        (300, 600, RUNNING, None),
        (600, 800, FAULT, "jam"),
        (800, None, RUNNING, None),
    ]
    assert store == set(builder.intervals)
    apply_changes(builder.remove_override(100), store)
    assert builder.intervals == before
    assert store == set(before)


def test_an_added_state_replaces_whole_intervals_and_wins_over_late_data() -> None:
    builder = _running_with_a_jam()
    builder.add_override(StateOverride(500, 900, STOPPED))
    assert _spans(builder) == [
        (0, 500, RUNNING, None),
        (500, 900, STOPPED, None),
        (900, None, RUNNING, None),
    ]
    changes = builder.apply([StateSample(700, FAULT + 1), StateSample(1000, FAULT)])
    assert [iv.start_ms for iv in changes.added] == [900, 1000]  # only after the added state
    assert _spans(builder)[1] == (500, 900, STOPPED, None)
    builder.remove_override(500)
    assert [(s, c) for s, _e, c, _r in _spans(builder)] == [
        (0, RUNNING),
        (600, FAULT),
        (700, FAULT + 1),
        (800, RUNNING),
        (1000, FAULT),
    ]


def test_an_added_state_of_the_same_code_is_still_its_own_interval() -> None:
    builder = _running_with_a_jam()
    builder.add_override(StateOverride(100, 200, RUNNING))
    assert [s for s, *_ in _spans(builder)] == [0, 100, 200, 600, 800]


def test_an_added_state_before_any_data_ends_in_unknown_state() -> None:
    builder = IntervalBuilder(FILLER, STATE_MAP)
    builder.add_override(StateOverride(100, 200, STOPPED))
    assert _spans(builder) == [(100, 200, STOPPED, None)]
    builder.apply([StateSample(500, RUNNING)])
    assert _spans(builder) == [(100, 200, STOPPED, None), (500, None, RUNNING, None)]


def test_added_states_never_overlap_nor_cover_a_manual_split() -> None:
    builder = _running_with_a_jam()
    builder.add_override(StateOverride(100, 300, STOPPED))
    with pytest.raises(DomainError, match="overlaps the state added by hand from 100 to 300"):
        builder.add_override(StateOverride(250, 400, STOPPED))
    builder.add_override(StateOverride(300, 400, FAULT))  # touching is fine
    builder.split(700)
    with pytest.raises(DomainError, match="split by hand at 700"):
        builder.add_override(StateOverride(650, 750, STOPPED))
    with pytest.raises(DomainError, match="no state was added by hand at 150"):
        builder.remove_override(150)
    with pytest.raises(DomainError, match="end after"):
        StateOverride(5, 5, STOPPED)


def test_a_reason_on_the_part_before_an_added_state_survives_it() -> None:
    builder = IntervalBuilder(FILLER, STATE_MAP)
    builder.apply([StateSample(0, FAULT), StateSample(1000, RUNNING)])
    builder.assign_reason(0, "motor")
    builder.add_override(StateOverride(400, 600, STOPPED))
    assert _spans(builder)[:3] == [
        (0, 400, FAULT, "motor"),
        (400, 600, STOPPED, None),
        (600, 1000, FAULT, "jam"),
    ]
    builder.remove_override(400)
    assert _spans(builder)[0] == (0, 1000, FAULT, "motor")


def test_changes_compose_into_their_net_effect() -> None:
    builder = _running_with_a_jam()
    first = builder.add_override(StateOverride(100, 300, STOPPED))
    second = builder.assign_reason(100, "jam")
    net = first.then(second)
    assert (100, 300, STOPPED, None) not in [
        (iv.start_ms, iv.end_ms, iv.code, iv.reason_id) for iv in net.added
    ]
    store = set(_running_with_a_jam().intervals)
    apply_changes(net, store)
    assert store == set(builder.intervals)


# -- pruning ----------------------------------------------------------------------------------

history = st.lists(
    st.tuples(st.integers(1, 50), st.sampled_from([RUNNING, STOPPED, FAULT])),
    min_size=5,
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(steps=history, data=st.data())
def test_a_pruned_builder_derives_later_data_exactly_as_a_full_one(
    steps: list[tuple[int, int]], data: st.DataObject
) -> None:
    samples, t = [], 0
    for gap, code in steps:
        t += gap * 10
        samples.append(StateSample(t, code))
    modes = [ModeSample(samples[len(samples) // 2].ts_ms + 5, CHANGEOVER)]
    cut = data.draw(st.integers(0, t))
    full, pruned = IntervalBuilder(FILLER, STATE_MAP), IntervalBuilder(FILLER, STATE_MAP)
    early = [s for s in samples if s.ts_ms <= cut]
    for builder in (full, pruned):
        builder.apply(early, [m for m in modes if m.ts_ms <= cut])
        if len(builder.intervals) > 1:
            builder.split(builder.intervals[-2].start_ms + 1)
    floor = pruned.prune_before(cut)
    if floor is not None:
        assert pruned.intervals[0].start_ms == floor <= cut
        assert pruned.memory_size < full.memory_size
    first = pruned.intervals[0].start_ms if pruned.intervals else 0
    late = [s for s in samples if s.ts_ms > cut]
    rest = [m for m in modes if m.ts_ms > cut] + [ModeSample(t + 1, PRODUCTION)]
    shuffled = data.draw(st.permutations(late))
    store = set(pruned.intervals)
    for sample in shuffled:
        full.apply([sample])
        apply_changes(pruned.apply([sample]), store)
    full.apply([], rest)
    apply_changes(pruned.apply([], rest), store)
    kept = [iv for iv in full.intervals if iv.start_ms >= first]
    assert list(pruned.intervals) == kept
    assert store == set(kept)


def test_pruning_keeps_an_added_state_reaching_over_the_floor() -> None:
    builder = IntervalBuilder(FILLER, STATE_MAP)
    builder.apply([StateSample(t, RUNNING if t % 200 else FAULT) for t in range(0, 2000, 100)])
    builder.add_override(StateOverride(950, 1250, STOPPED))
    assert builder.prune_before(1000) == 950
    assert builder.overrides == (StateOverride(950, 1250, STOPPED),)
    assert builder.prune_before(1550) == 1500
    assert len(builder.overrides) == 0
    assert builder.prune_before(1500) is None


def test_both_parts_of_a_split_keep_a_reason_given_by_hand() -> None:
    builder = _running_with_a_jam()
    builder.assign_reason(600, "motor")
    changes = builder.split(700)
    assert _spans(builder)[1:3] == [(600, 700, FAULT, "motor"), (700, 800, FAULT, "motor")]
    store = set(_running_with_a_jam().intervals)
    apply_changes(_running_with_a_jam().assign_reason(600, "motor"), store)
    apply_changes(changes, store)
    assert store == set(builder.intervals)
