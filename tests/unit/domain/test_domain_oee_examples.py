"""OEE against published, fully worked examples, computed through the real pipeline: PLC state
samples -> IntervalBuilder -> account_for with the shift calendar, runs and ideal rates."""

from __future__ import annotations

from datetime import date, time

import pytest
from domain_fixtures import FAULT, FILLER, MIN, RUNNING, STOPPED, at, derive

from andon.domain import (
    CHANGEOVER,
    PRODUCTION,
    BreakPattern,
    IdealCycleResolver,
    IdealRate,
    IdealRates,
    ModeSample,
    ProducedCount,
    Run,
    RunBook,
    ShiftCalendar,
    ShiftPattern,
    account_for,
    six_big_losses,
)

DAY = date(2024, 6, 3)  # a Monday, far from DST changes


def _resolver(cycle: IdealRate) -> IdealCycleResolver:
    book = RunBook(FILLER, [Run("R1", "O1", FILLER, at(DAY, 0), at(DAY, 23))])
    return IdealCycleResolver({FILLER: book}, {"O1": "widget"}, IdealRates([cycle]))


def _spread(total: int, reject: int, start: int, end: int, parts: int = 7) -> list[ProducedCount]:
    """The shift's counts as several records, as counter deltas would arrive."""
    step = (end - start) // parts
    counts = []
    for i in range(parts):
        t, r = total // parts, reject // parts
        if i == parts - 1:
            t, r = total - t * (parts - 1), reject - r * (parts - 1)
        counts.append(ProducedCount(FILLER, start + i * step, t, r))
    return counts


def test_oee_com_classic_example() -> None:
    """oee.com, "OEE Calculation" (https://www.oee.com/calculating-oee/), also reproduced at
    https://pranavwrite.medium.com/what-is-oee-f35ec55eeeea: shift 480 min, breaks 2 x 15 min +
    one 30 min meal, down time 47 min, ideal cycle time 1.0 s, total count 19,271, reject count
    423. Published: planned production time 420 min, run time 373 min, good count 18,848,
    availability 88.81 %, performance 86.11 %, quality 97.80 %, OEE 74.79 %.

    The PLC reports "Stopped" (an unplanned code) during the breaks: the calendar's breaks take
    precedence and account it as planned downtime."""
    shift = ShiftPattern(
        "Day",
        frozenset(range(7)),
        time(6),
        time(14),
        (
            BreakPattern(time(8), time(8, 15)),
            BreakPattern(time(10), time(10, 30), "Meal"),
            BreakPattern(time(12), time(12, 15)),
        ),
    )
    calendar = ShiftCalendar("Europe/Prague", (shift,))
    start, end = at(DAY, 6), at(DAY, 14)
    intervals = derive(
        [
            (at(DAY, 5, 50), RUNNING),
            (at(DAY, 8), STOPPED),
            (at(DAY, 8, 15), RUNNING),
            (at(DAY, 10), STOPPED),
            (at(DAY, 10, 30), RUNNING),
            (at(DAY, 11), FAULT),
            (at(DAY, 11, 47), RUNNING),
            (at(DAY, 12), STOPPED),
            (at(DAY, 12, 15), RUNNING),
            (at(DAY, 14, 5), STOPPED),
        ]
    )
    account = account_for(
        intervals,
        _spread(19_271, 423, start, end),
        start,
        end,
        shifts=calendar.shifts_between(start, end),
        ideal_cycle_ms=_resolver(IdealRate.cycle_seconds("widget", FILLER, 1)),
    )
    assert account.planned_production_time_ms == 420 * MIN
    assert account.run_time_ms == 373 * MIN
    assert account.planned_downtime_ms == 60 * MIN
    assert account.good_count == 18_848
    assert account.availability == pytest.approx(0.8881, abs=5e-5)
    assert account.performance == pytest.approx(0.8611, abs=5e-5)
    assert account.quality == pytest.approx(0.9780, abs=5e-5)
    assert account.oee == pytest.approx(0.7479, abs=5e-5)
    assert account.failures == 1
    assert account.mttr_ms == 47 * MIN
    assert account.downtime_by_reason() == {"jam": 47 * MIN}
    losses = six_big_losses(account)
    assert losses.total_ms == pytest.approx(420 * MIN - account.fully_productive_time_ms)


def test_waycalculator_example_1() -> None:
    """waycalculator.com OEE calculator, "Example 1"
    (https://waycalculator.com/tool/Overall-Equipment-Effectiveness-OEE-Calculator.php): planned
    production time 480 min, run time 420 min, ideal cycle time 1 min, total count 400, good 380.
    Published: availability 87.5 %, performance 95.2 %, quality 95 %, OEE 79.1 %.

    No breaks: the 480 minutes are all planned production time; 60 minutes of faults."""
    start, end = at(DAY, 6), at(DAY, 14)
    intervals = derive(
        [(start, RUNNING), (at(DAY, 9), FAULT), (at(DAY, 10), RUNNING), (end, STOPPED)]
    )
    account = account_for(
        intervals,
        _spread(400, 20, start, end),
        start,
        end,
        ideal_cycle_ms=_resolver(IdealRate.per_minute("widget", FILLER, 1)),
    )
    assert account.planned_production_time_ms == 480 * MIN
    assert account.run_time_ms == 420 * MIN
    assert account.availability == pytest.approx(0.875)
    assert account.performance == pytest.approx(0.952, abs=5e-4)
    assert account.quality == pytest.approx(0.95)
    # The page multiplies the rounded factors (0.875 x 0.952 x 0.95 = 0.791); exact is 380/480.
    assert account.oee == pytest.approx(0.791, abs=1e-3)
    assert account.oee == pytest.approx(380 / 480)


def test_tpm_route_to_world_class_performance_example() -> None:
    """Willmott & McCarthy, "TPM: A Route to World-Class Performance", p. 127 (Miller 201,
    Tuesday of week 17; https://digilib.universitaspertamina.ac.id/ebook/TPM%20:%20A%20Route%20to%20World-Class%20Performance%20/files/basic-html/page148.html):
    planned availability 910 min, downtime = unplanned stoppages 115 + changeovers 12 = 127 min,
    uptime 783 min, availability 86.0 %; standard cycle time 3 min, completed cycles 203,
    planned cycles 783 / 3 = 261, performance 203 / 261 = 77.7 % (the book truncates 77.78).

    The changeover is a CHANGEOVER mode over a stopped machine: accounted as setup time inside
    planned production time, an availability loss exactly as in the book."""
    start = at(DAY, 6)
    end = start + 910 * MIN
    intervals = derive(
        [
            (start, RUNNING),
            (start + 100 * MIN, FAULT),
            (start + 215 * MIN, RUNNING),
            (start + 500 * MIN, STOPPED),
            (start + 512 * MIN, RUNNING),
            (end, STOPPED),
        ],
        modes=[
            ModeSample(start + 500 * MIN, CHANGEOVER),
            ModeSample(start + 512 * MIN, PRODUCTION),
        ],
    )
    account = account_for(
        intervals,
        [ProducedCount(FILLER, start + 600 * MIN, 203)],
        start,
        end,
        ideal_cycle_ms=_resolver(IdealRate.cycle_seconds("widget", FILLER, 180)),
    )
    assert account.planned_production_time_ms == 910 * MIN
    assert account.unplanned_downtime_ms == 115 * MIN
    assert account.setup_ms == 12 * MIN
    assert account.downtime_ms == 127 * MIN
    assert account.run_time_ms == 783 * MIN
    assert account.availability == pytest.approx(0.860, abs=5e-4)
    assert account.performance is not None
    assert 0.777 <= account.performance < 0.778
    assert account.failures == 1  # the changeover is not a failure


def test_fabrico_example_availability() -> None:
    """Fabrico, "OEE Calculation" (https://www.fabrico.io/blog/oee-calculation/): 8 h shift
    (480 min), planned breaks 60 min (two 15 min and one 30 min lunch), unplanned downtime 40 min
    (a jam), ideal cycle time 1 min, 300 pieces, 15 rejected. Published: planned production time
    420 min, run time 380 min, availability 90.4 %. Performance 300 / 380 and quality 285 / 300
    follow from the same formulas."""
    shift = ShiftPattern(
        "Day",
        frozenset(range(7)),
        time(6),
        time(14),
        (
            BreakPattern(time(9), time(9, 15)),
            BreakPattern(time(11), time(11, 30), "Lunch"),
            BreakPattern(time(13), time(13, 15)),
        ),
    )
    calendar = ShiftCalendar("Europe/Prague", (shift,))
    start, end = at(DAY, 6), at(DAY, 14)
    # The line is stopped from 9:00 to 9:55: 15 min of it is the break, 40 min is the jam.
    intervals = derive(
        [
            (start, RUNNING),
            (at(DAY, 9), FAULT),
            (at(DAY, 9, 55), RUNNING),
            (at(DAY, 11), STOPPED),
            (at(DAY, 11, 30), RUNNING),
            (at(DAY, 13), STOPPED),
            (at(DAY, 13, 15), RUNNING),
        ]
    )
    account = account_for(
        intervals,
        _spread(300, 15, start, end),
        start,
        end,
        shifts=calendar.shifts_between(start, end),
        ideal_cycle_ms=_resolver(IdealRate.per_minute("widget", FILLER, 1)),
    )
    assert account.planned_production_time_ms == 420 * MIN
    assert account.run_time_ms == 380 * MIN
    assert account.availability is not None
    assert 0.904 <= account.availability < 0.905  # published truncated: 90.4 %
    assert account.performance == pytest.approx(300 / 380)
    assert account.quality == pytest.approx(0.95)
    assert account.oee == pytest.approx(380 / 420 * 300 / 380 * 0.95)
