"""``SampleLog`` and ``InternedSampleLog`` behave as a dict by timestamp, whatever the order of
puts, lookups and prunes, while a sample costs two 64-bit words."""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from andon.domain.sample_log import InternedSampleLog, SampleLog

#: Timestamps close together (so puts collide and land in the middle), and a few that do not
#: fit 64 bits; values the same, and negative ones.
timestamps = st.one_of(
    st.integers(-5, 60), st.sampled_from([2**63 - 1, 2**63, 2**64 + 7, -(2**64)])
)
values = st.one_of(st.integers(-3, 1000), st.sampled_from([-(2**63), 2**63, -(2**70), 2**80]))

operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), timestamps, values),
        st.tuples(st.just("put_many"), st.dictionaries(timestamps, values, max_size=40)),
        st.tuples(st.just("drop_first"), st.integers(-1, 8)),
        st.tuples(st.just("look"), timestamps),
    ),
    max_size=40,
)


def _reference_position(model: dict[int, Any], ts: int) -> int:
    return sorted(model).index(ts)


def _check_same(log: SampleLog, model: dict[int, int]) -> None:
    order = sorted(model)
    assert len(log) == len(model)
    assert list(log.items()) == [(ts, model[ts]) for ts in order]
    assert log.last_ts == (order[-1] if order else None)
    for start in range(len(order) + 1):
        assert list(log.timestamps(start)) == order[start:]
        assert list(log.values(start)) == [model[ts] for ts in order[start:]]
    for i, ts in enumerate(order):
        assert (log.ts_at(i), log.value_at(i)) == (ts, model[ts])


@settings(max_examples=400, deadline=None)
@given(operations)
def test_any_sequence_of_puts_lookups_and_prunes_equals_a_dict(ops: list[tuple[Any, ...]]) -> None:
    log, model = SampleLog(), dict[int, int]()
    for op in ops:
        if op[0] == "put":
            _, ts, value = op
            model[ts] = value
            assert log.put(ts, value) == _reference_position(model, ts)
        elif op[0] == "put_many":
            log.put_many(op[1])
            model.update(op[1])
        elif op[0] == "drop_first":
            log.drop_first(op[1])
            for ts in sorted(model)[: max(op[1], 0)]:
                del model[ts]
        else:
            ts = op[1]
            assert log.get(ts) == model.get(ts)
            assert log.index_at_or_before(ts) == sum(t <= ts for t in model) - 1
        _check_same(log, model)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_interned_values_read_back_as_a_dict_of_the_values(ops: list[tuple[Any, ...]]) -> None:
    log, model = InternedSampleLog[str](), dict[int, str]()
    for op in ops:
        if op[0] in ("put", "put_many"):
            batch = {op[1]: op[2]} if op[0] == "put" else op[1]
            named = {ts: f"mode {value % 7}" for ts, value in batch.items()}
            log.put_many(named)
            model.update(named)
        elif op[0] == "drop_first":
            log.drop_first(op[1])
            for ts in sorted(model)[: max(op[1], 0)]:
                del model[ts]
        else:
            assert log.get(op[1]) == model.get(op[1])
            assert log.index_at_or_before(op[1]) == sum(t <= op[1] for t in model) - 1
        order = sorted(model)
        assert len(log) == len(model)
        assert list(log.items()) == [(ts, model[ts]) for ts in order]
        assert list(log.timestamps()) == order
        assert list(log.values()) == [model[ts] for ts in order]
        assert [log.value_at(i) for i in range(len(order))] == [model[ts] for ts in order]


def test_pruning_forgets_values_no_longer_sampled_once_many_were_seen() -> None:
    log = InternedSampleLog[str]()
    for ts in range(200):
        log.put_many({ts: f"name {ts}"})  # a PLC naming a new mode every second
    assert log.distinct == 200
    log.drop_first(190)
    assert log.distinct == 10
    assert list(log.items()) == [(ts, f"name {ts}") for ts in range(190, 200)]
    log.put_many({150: "name 199", 250: "name 0"})  # late, then an old name seen again
    assert log.get(150) == "name 199"
    assert log.value_at(len(log) - 1) == "name 0"


def test_a_value_read_back_is_the_first_equal_one_seen() -> None:
    first, equal = "production", "".join(["produc", "tion"])
    assert first == equal
    assert first is not equal
    log = InternedSampleLog[str]()
    log.put_many({1: first})
    log.put_many({2: equal})
    log.put_many({3: first})
    assert log.get(2) is first
    assert log.get(3) is first
    assert log.distinct == 1


def test_a_late_batch_is_merged_in_its_place_and_later_values_win() -> None:
    log = SampleLog()
    log.put_many({ts: ts * 10 for ts in range(0, 100, 2)})
    late = {ts: -ts for ts in range(51, 101, 2)}  # 25 samples among the last ones and after
    late[60] = 7  # a known instant: replaced
    log.put_many(late)
    expected = {ts: ts * 10 for ts in range(0, 100, 2)} | late
    assert list(log.items()) == sorted(expected.items())


@pytest.mark.parametrize("late", [False, True])
def test_a_sample_costs_two_64_bit_words(late: bool) -> None:
    count = 20_000
    stamps = [1_772_445_600_000 + i * 1000 for i in range(count)]
    order = stamps[::2] + stamps[1::2] if late else stamps  # the second half late, in between
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        log = SampleLog()
        for ts in order:
            log.put(ts, ts % 100_000 + 100_000)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        if not was_tracing:
            tracemalloc.stop()
    assert len(log) == count
    assert held / count <= 20  # 16 bytes and the arrays' spare room; a dict and a list: ~100
