"""Orders lifecycle, runs that never overlap on one asset, scheduled runs, ideal rates."""

from __future__ import annotations

from fractions import Fraction

import pytest
from domain_fixtures import FILLER

from andon.domain import (
    AssetPath,
    DomainError,
    IdealCycleResolver,
    IdealRate,
    IdealRates,
    OrderState,
    ProductionOrder,
    Run,
    RunBook,
    Schedule,
    ScheduledRun,
)


def test_order_lifecycle() -> None:
    order = ProductionOrder("O1", "widget", 1000)
    order = order.transition(OrderState.RELEASED).transition(OrderState.RUNNING)
    done = order.transition(OrderState.COMPLETED)
    assert done.state is OrderState.COMPLETED
    with pytest.raises(DomainError, match="cannot go from completed to running"):
        done.transition(OrderState.RUNNING)
    with pytest.raises(
        DomainError, match="cannot go from planned to running; allowed: cancelled, released"
    ):
        ProductionOrder("O2", "widget", 5).transition(OrderState.RUNNING)
    with pytest.raises(DomainError, match="quantity must be positive"):
        ProductionOrder("O3", "widget", 0)


def test_runs_never_overlap_but_may_touch() -> None:
    book = RunBook(FILLER, [Run("R1", "O1", FILLER, 0, 100)])
    book.add(Run("R2", "O1", FILLER, 100, 200))  # adjacent: end == next start
    with pytest.raises(DomainError, match="run 'R3' \\[150, 300\\) overlaps run 'R2'"):
        book.add(Run("R3", "O1", FILLER, 150, 300))
    book.add(Run("R4", "O2", FILLER, 300))  # open: extends to +infinity
    with pytest.raises(DomainError, match="overlaps run 'R4' \\[300, open\\)"):
        book.add(Run("R5", "O2", FILLER, 10_000, 20_000))
    assert book.open_run is not None
    book.end("R4", 400)
    book.add(Run("R5", "O2", FILLER, 400, 500))
    with pytest.raises(DomainError, match="already ended"):
        book.end("R4", 450)
    with pytest.raises(DomainError, match="overlaps run 'R2'"):
        book.edit("R1", 0, 150)
    book.edit("R1", 0, 90)
    assert book.run_at(95) is None
    assert book.run_at(100).id == "R2"  # type: ignore[union-attr]
    book.delete("R2")
    assert [r.id for r in book] == ["R1", "R4", "R5"]
    with pytest.raises(DomainError, match="end 5 must be after start 10"):
        Run("R9", "O1", FILLER, 10, 5)
    with pytest.raises(DomainError, match="is for"):
        book.add(Run("R9", "O1", AssetPath.parse("Acme/Other"), 1000, 2000))


def test_scheduled_runs_follow_the_same_rule() -> None:
    schedule = Schedule(FILLER, [ScheduledRun("S1", "O1", FILLER, 0, 100)])
    schedule.add(ScheduledRun("S2", "O2", FILLER, 100, 200))
    with pytest.raises(DomainError, match=r"scheduled run 'S3'.*overlaps scheduled run 'S1'"):
        schedule.add(ScheduledRun("S3", "O3", FILLER, 50, 60))
    schedule.edit("S2", 150, 250)
    assert [(s.start_ms, s.end_ms) for s in schedule] == [(0, 100), (150, 250)]


def test_ideal_cycle_from_runs_orders_and_rates() -> None:
    rates = IdealRates([IdealRate.per_minute("widget", FILLER, 120)])
    resolver = IdealCycleResolver(
        {FILLER: RunBook(FILLER, [Run("R1", "O1", FILLER, 0, 100)])}, {"O1": "widget"}, rates
    )
    assert resolver(FILLER, 50) == Fraction(500)
    assert resolver(FILLER, 100) is None  # outside any run
    assert rates.cycle_time_ms("gadget", FILLER) is None
    with pytest.raises(DomainError, match="must be > 0"):
        IdealRate.per_minute("widget", FILLER, 0)
