"""Six big losses and downtime Pareto charts from a real account."""

from __future__ import annotations

from fractions import Fraction

import pytest
from domain_fixtures import BLOCKED, FAULT, FILLER, MIN, RUNNING, STOPPED, derive

from andon.domain import (
    CHANGEOVER,
    ModeSample,
    ProducedCount,
    Reason,
    ReasonTree,
    TimeAccount,
    account_for,
    downtime_pareto,
    pareto_by_asset,
    six_big_losses,
)


def test_six_big_losses_add_up_to_the_lost_time() -> None:
    intervals = derive(
        [
            (0, RUNNING),
            (60 * MIN, FAULT),
            (90 * MIN, RUNNING),
            (100 * MIN, BLOCKED),
            (102 * MIN, RUNNING),
            (200 * MIN, STOPPED),
            (220 * MIN, RUNNING),
        ],
        modes=[ModeSample(200 * MIN, CHANGEOVER)],
    )
    counts = [
        ProducedCount(FILLER, 210 * MIN, 50, 10, startup=True),
        ProducedCount(FILLER, 230 * MIN, 1000, 20),
    ]
    account = account_for(
        intervals, counts, 0, 240 * MIN, ideal_cycle_ms=lambda _a, _t: Fraction(6000)
    )
    losses = six_big_losses(account)
    assert losses.breakdowns_ms == 30 * MIN
    assert losses.small_stops_ms == 2 * MIN
    assert losses.setup_adjustments_ms == 20 * MIN
    assert losses.startup_rejects_ms == 1 * MIN  # 10 pieces x 6 s
    assert losses.production_rejects_ms == 2 * MIN
    assert losses.reduced_speed_ms == 188 * MIN - 105 * MIN
    assert losses.total_ms == pytest.approx(
        account.planned_production_time_ms - account.fully_productive_time_ms
    )


def test_pareto_by_reason_category_and_asset() -> None:
    account = TimeAccount(
        unplanned_downtime_ms=60, loss_by_reason=(("", 10), ("jam", 30), ("belt", 20))
    )
    rows = downtime_pareto(account)
    assert [(r.key, r.downtime_ms) for r in rows] == [("jam", 30), ("belt", 20), ("", 10)]
    assert rows[-1].cumulative_share == pytest.approx(1.0)
    tree = ReasonTree(
        [Reason("mech", "Mechanical"), Reason("jam", "Jam", "mech"), Reason("belt", "Belt", "mech")]
    )
    assert [(r.key, r.downtime_ms) for r in downtime_pareto(account, tree, by_category=True)] == [
        ("mech", 50),
        ("", 10),
    ]
    by_asset = pareto_by_asset({FILLER: account, FILLER.child("Valve"): TimeAccount(setup_ms=90)})
    assert by_asset[0].key.endswith("Valve")
    assert by_asset[0].share == pytest.approx(0.6)
