"""Counter deltas (wrap versus reset), counter series in any order, infeed/outfeed/waste."""

from __future__ import annotations

from fractions import Fraction

import pytest
from domain_fixtures import FILLER
from hypothesis import given, settings
from hypothesis import strategies as st

from andon.domain import (
    AssetPath,
    CountDelta,
    CounterSample,
    CountSeries,
    DomainError,
    IdealRate,
    IdealRates,
    ProducedCount,
    ProductionCounts,
    counter_delta,
)

UINT32_MAX = 2**32 - 1


def test_wrap_reset_and_plain_deltas() -> None:
    assert counter_delta(10, 25, 999) == 15
    assert counter_delta(995, 3, 999) == 8  # 996..999, 0..3: a wrap
    assert counter_delta(600, 40, 999) == 40  # far from the top: reset to 0, counted 40 since
    assert counter_delta(UINT32_MAX - 1, 2, UINT32_MAX) == 4
    assert counter_delta(10, 5, 999, wrap_window=1000) == 995  # a wide window says wrap


def test_out_of_range_values_are_rejected() -> None:
    with pytest.raises(DomainError, match=r"outside 0\.\.999"):
        counter_delta(0, 1000, 999)
    with pytest.raises(DomainError, match="counter_max must be positive"):
        counter_delta(0, 0, 0)


@given(counter_max=st.integers(15, UINT32_MAX), data=st.data())
def test_small_advances_across_the_top_are_wraps(counter_max: int, data: st.DataObject) -> None:
    window = (counter_max + 1) // 4
    prev = data.draw(st.integers(0, counter_max))
    step = data.draw(st.integers(0, window - 1))
    curr = (prev + step) % (counter_max + 1)
    assert counter_delta(prev, curr, counter_max) == step


@given(counter_max=st.integers(15, UINT32_MAX), data=st.data())
def test_a_reset_counts_from_zero(counter_max: int, data: st.DataObject) -> None:
    window = (counter_max + 1) // 4
    prev = data.draw(st.integers(1, counter_max - window))  # not near the top
    curr = data.draw(st.integers(0, prev - 1))
    assert counter_delta(prev, curr, counter_max) == curr


@settings(max_examples=100, deadline=None)
@given(
    values=st.dictionaries(st.integers(0, 1000), st.integers(0, 999), min_size=2, max_size=30),
    data=st.data(),
)
def test_series_in_any_order_gives_the_sorted_deltas(
    values: dict[int, int], data: st.DataObject
) -> None:
    samples = [CounterSample(ts, v) for ts, v in values.items()]
    live = CountSeries(999)
    live.apply(sorted(samples, key=lambda s: s.ts_ms))
    late = CountSeries(999)
    store: set[tuple[int, int, int]] = set()
    shuffled = data.draw(st.permutations(samples))
    for i in range(0, len(shuffled), 3):
        changes = late.apply(shuffled[i : i + 3])
        for d in changes.removed:
            store.remove((d.start_ms, d.end_ms, d.delta))
        store.update((d.start_ms, d.end_ms, d.delta) for d in changes.added)
    assert late.deltas == live.deltas
    assert store == {(d.start_ms, d.end_ms, d.delta) for d in live.deltas}
    ordered = sorted(values)
    assert [d.end_ms for d in live.deltas] == ordered[1:]


def test_series_rejects_conflicting_samples() -> None:
    series = CountSeries(999)
    series.apply([CounterSample(0, 5)])
    with pytest.raises(DomainError, match="conflicting counter values at 0"):
        series.apply([CounterSample(0, 6)])


def test_any_two_counts_give_the_third() -> None:
    assert ProductionCounts.from_any_two(infeed=100, waste=3) == ProductionCounts(100, 97, 3)
    assert ProductionCounts.from_any_two(outfeed=97, waste=3) == ProductionCounts(100, 97, 3)
    assert ProductionCounts.from_any_two(infeed=100, outfeed=97) == ProductionCounts(100, 97, 3)
    with pytest.raises(DomainError, match="waste 5 exceeds infeed 3"):
        ProductionCounts.from_any_two(infeed=3, waste=5)
    with pytest.raises(DomainError, match="cannot be negative"):
        ProductionCounts.from_any_two(infeed=-1, outfeed=0)
    with pytest.raises(DomainError, match="two of infeed"):
        ProductionCounts.from_any_two(infeed=3)
    with pytest.raises(DomainError, match="!= outfeed"):
        ProductionCounts(10, 5, 3)
    with pytest.raises(DomainError, match="exceeds total"):
        ProducedCount(FILLER, 0, total=3, reject=4)


def test_a_jump_faster_than_the_asset_can_make_is_not_counted() -> None:
    # 2 units/s at most; a restarted simulator reads 434,102 where the counter stood at 900.
    series = CountSeries(2**32 - 1, max_units_per_ms=Fraction(2, 1000))
    changes = series.apply(
        [CounterSample(0, 880), CounterSample(10_000, 900), CounterSample(70_000, 434_102)]
    )
    assert changes.added == (
        CountDelta(0, 10_000, 20),
        CountDelta(10_000, 70_000, 0, dropped=433_202),
    )
    # The new value is the baseline: what follows counts normally.
    later = series.apply([CounterSample(71_000, 434_104)])
    assert later.added == (CountDelta(70_000, 71_000, 2),)


def test_the_rate_bound_allows_slack_for_samples_close_together() -> None:
    series = CountSeries(1000, max_units_per_ms=Fraction(2, 1000))
    changes = series.apply([CounterSample(0, 0), CounterSample(5, 10), CounterSample(10, 21)])
    assert [d.delta for d in changes.added] == [10, 0]
    assert changes.added[1].dropped == 11


def test_without_a_rate_every_reading_counts_as_before() -> None:
    series = CountSeries(2**32 - 1)
    changes = series.apply([CounterSample(0, 900), CounterSample(1, 434_102)])
    assert changes.added == (CountDelta(0, 1, 433_202),)


def test_the_fastest_ideal_rate_of_an_asset() -> None:
    asset = AssetPath.parse("P/L/M")
    rates = IdealRates(
        [IdealRate.per_minute("a", asset, 60), IdealRate.per_minute("b", asset, 120)]
    )
    assert rates.fastest_units_per_ms(asset) == Fraction(2, 1000)
    assert rates.fastest_units_per_ms(AssetPath.parse("P/L/Other")) is None


def test_a_batch_counter_standing_still_then_jumping_is_production() -> None:
    # 10 units/min at most; the counter stands at 0 for an hour, is republished unchanged 1 s
    # before the batch (a birth after a reconnect), then shows the batch of 200.
    series = CountSeries(2**32 - 1, max_units_per_ms=Fraction(10, 60_000) * 3)
    changes = series.apply(
        [CounterSample(0, 0), CounterSample(3_599_000, 0), CounterSample(3_600_000, 200)]
    )
    assert [d.delta for d in changes.added] == [0, 200]
    assert all(d.dropped == 0 for d in changes.added)


def test_the_bound_counts_from_the_last_change_not_the_first_reading() -> None:
    series = CountSeries(2**32 - 1, max_units_per_ms=Fraction(1, 1000))
    # 100 units in 5 s after standing still since t=0 is fine; since the last change (t=4 s)
    # the next 100 units in 1 s are not.
    changes = series.apply(
        [CounterSample(0, 0), CounterSample(4_000, 0), CounterSample(5_000, 5),
         CounterSample(6_000, 105)]
    )  # fmt: skip
    assert [(d.delta, d.dropped) for d in changes.added] == [(0, 0), (5, 0), (0, 100)]
