"""Count edits: how a request resolves against the period's figures, exact integer shares that
never take a segment below zero, and segments cut at hours and shifts (DST included)."""

from __future__ import annotations

from datetime import date, time

import pytest
from domain_fixtures import FILLER, PRAGUE, at
from hypothesis import given, settings
from hypothesis import strategies as st

from andon.domain import (
    CountEditError,
    CountEditMode,
    CountTriple,
    ShiftCalendar,
    ShiftPattern,
    apportion,
    edit_boundaries,
    plan_corrections,
    resolve_change,
)

SET, ADD = CountEditMode.SET, CountEditMode.ADD
NOW = CountTriple(100, 90, 10)


@pytest.mark.parametrize(
    ("mode", "given", "change"),
    [
        (SET, {"infeed": 120}, (20, 20, 0)),  # waste stays: 20 more good pieces
        (SET, {"outfeed": 80}, (-10, -10, 0)),
        (SET, {"waste": 25}, (0, -15, 15)),  # infeed stays: good turned out scrap
        (SET, {"infeed": 100, "outfeed": 70}, (0, -20, 20)),
        (SET, {"infeed": 50, "waste": 0}, (-50, -40, -10)),
        (SET, {"outfeed": 95, "waste": 5}, (0, 5, -5)),
        (SET, {"infeed": 0, "outfeed": 0, "waste": 0}, (-100, -90, -10)),
        (ADD, {"infeed": 30}, (30, 30, 0)),
        (ADD, {"outfeed": -20}, (-20, -20, 0)),
        (ADD, {"waste": 4}, (0, -4, 4)),
        (ADD, {"infeed": 10, "waste": 10}, (10, 0, 10)),
        (ADD, {"outfeed": 5, "waste": -5}, (0, 5, -5)),
    ],
)
def test_fields_not_given_follow_from_the_given_ones(
    mode: CountEditMode, given: dict[str, int], change: tuple[int, int, int]
) -> None:
    assert resolve_change(mode, NOW, **given) == CountTriple(*change)


@pytest.mark.parametrize(
    ("mode", "given", "message"),
    [
        (SET, {}, "give infeed, outfeed or waste"),
        (ADD, {}, "give infeed, outfeed or waste"),
        (SET, {"infeed": -1}, "infeed: a figure cannot be negative"),
        (SET, {"infeed": 5}, "waste 10 would be above infeed 5"),
        (SET, {"infeed": 10, "outfeed": 20}, "good 20 above total 10"),
        (SET, {"infeed": 10, "outfeed": 5, "waste": 1}, r"is not outfeed 5 \+ waste 1"),
        (SET, {"outfeed": 90}, "nothing to change"),
        (ADD, {"infeed": -101}, "infeed would be -1"),
        (ADD, {"waste": -11}, "waste would be -1"),
        (ADD, {"waste": 91}, "waste 101 would be above infeed 100"),
        (ADD, {"infeed": 0}, "nothing to change"),
    ],
)
def test_impossible_requests_are_refused(
    mode: CountEditMode, given: dict[str, int], message: str
) -> None:
    with pytest.raises(CountEditError, match=message):
        resolve_change(mode, NOW, **given)


@settings(max_examples=300, deadline=None)
@given(
    weights=st.lists(st.integers(0, 1000), min_size=1, max_size=12).filter(lambda w: sum(w) > 0),
    fraction=st.floats(-1.0, 3.0),
)
def test_shares_sum_exactly_and_never_go_below_the_weight(
    weights: list[int], fraction: float
) -> None:
    amount = round(sum(weights) * fraction)
    shares = apportion(amount, weights)
    assert sum(shares) == amount
    assert all(share >= -w for share, w in zip(shares, weights, strict=True))
    if amount >= 0:
        assert all(share >= 0 for share in shares)
    assert apportion(amount, weights) == shares  # deterministic


def test_corrections_follow_what_segments_hold_or_else_time() -> None:
    bounds = [0, 100, 200, 400]
    existing = [CountTriple(10, 10, 0), CountTriple(0, 0, 0), CountTriple(35, 30, 5)]
    pieces = plan_corrections(FILLER, bounds, existing, CountTriple(-20, -20, 0))
    assert [(p.ts_ms, p.total, p.reject) for p in pieces] == [(0, -5, 0), (200, -15, 0)]
    pieces = plan_corrections(FILLER, bounds, [CountTriple(0, 0, 0)] * 3, CountTriple(8, 0, 8))
    assert [(p.ts_ms, p.total, p.reject) for p in pieces] == [(0, 2, 2), (100, 2, 2), (200, 4, 4)]
    with pytest.raises(CountEditError, match="below zero"):
        plan_corrections(FILLER, bounds, existing, CountTriple(-50, -50, 0))


@settings(max_examples=200, deadline=None)
@given(
    held=st.lists(st.tuples(st.integers(0, 500), st.integers(0, 50)), min_size=1, max_size=10),
    good=st.floats(0.0, 2.0),
    waste=st.floats(0.0, 2.0),
)
def test_any_valid_set_leaves_every_segment_non_negative(
    held: list[tuple[int, int]], good: float, waste: float
) -> None:
    existing = [CountTriple.of(g, r) for g, r in held]
    total = sum(existing, CountTriple(0, 0, 0))
    target = CountTriple.of(round(total.outfeed * good), round(total.waste * waste))
    if target == total:
        return
    change = resolve_change(SET, total, outfeed=target.outfeed, waste=target.waste)
    bounds = [i * 1000 for i in range(len(existing) + 1)]
    pieces = plan_corrections(FILLER, bounds, existing, change)
    by_start = {p.ts_ms: p for p in pieces}
    for start, before in zip(bounds, existing, strict=False):
        piece = by_start.get(start)
        after = before if piece is None else before + CountTriple.of(piece.good, piece.reject)
        assert after.outfeed >= 0
        assert after.waste >= 0
    assert sum(p.total for p in pieces) == change.infeed
    assert sum(p.reject for p in pieces) == change.waste


def test_segments_are_cut_at_local_hours_and_shift_edges_across_dst() -> None:
    calendar = ShiftCalendar(
        "Europe/Prague", (ShiftPattern("Day", frozenset(range(7)), time(6, 30), time(14, 30)),)
    )
    day = date(2026, 3, 29)  # clocks go from 02:00 to 03:00
    start, end = at(day, 1, 15), at(day, 7, 0)
    cuts = edit_boundaries(start, end, PRAGUE, calendar)
    assert cuts == [start, at(day, 3), at(day, 4), at(day, 5), at(day, 6), at(day, 6, 30), end]
    assert cuts[1] - cuts[0] == 45 * 60_000  # 01:15 to 03:00 local is 45 minutes
    with pytest.raises(CountEditError, match="end must be after start"):
        edit_boundaries(end, start, PRAGUE, None)
