"""The accounts of the UNS documents, read as stored buckets less what lies ahead of now, equal
``MesQueries.total`` over the current shift (or local day): across shift and hour changes, with
late data, samples stamped ahead of the server's clock, manual edits and count corrections."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _mes_rig import CELL, T0, TAG, MesRig, small_plant

from andon.domain import AssetPath, CountEditMode
from andon.server.mes_count_edits import CountEdits
from andon.server.plant_file import parse_plant
from andon.server.uns_accounts import PeriodAccounts
from andon.storage.types import Sample

ASSET = AssetPath.parse(CELL)
ASSETS = [ASSET, AssetPath.parse("Site/Area/Line"), AssetPath.parse("Site")]
MIN = 60_000
EARLY = T0 + 5 * 3_600_000 + 40 * MIN  # 05:40 local: the night shift, 20 min before the day's


def _no_audit(*_: object) -> None:
    """Edits made straight through the service: their audit is the API's (tested there)."""


def _plant_rig(tmp_path: Path, **plant: object) -> MesRig:
    return MesRig(
        f"sqlite:///{tmp_path / 'a.db'}", parse_plant(small_plant(**plant), "t.toml"), EARLY
    )


@pytest.fixture(params=["shifts", "days"])
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MesRig]:
    # Without a calendar the period is the local day, read from the hour buckets.
    rig = _plant_rig(tmp_path) if request.param == "shifts" else _plant_rig(tmp_path, calendar=[])
    try:
        yield rig
    finally:
        rig.close()


def _assert_same(rig: MesRig, accounts: PeriodAccounts) -> None:
    rig.flush()
    now = rig.now
    found = accounts.totals(ASSETS, now)
    for asset in ASSETS:
        period, account = found[asset]
        assert (period.start_ms, period.end_ms, period.label) == rig.queries.current_period(
            asset, now
        )
        start = period.start_ms
        assert account == rig.queries.total(asset, start, max(now, start + 1)), (asset, now)


def _minute(rig: MesRig, minute: int, code: int, count: int) -> list[Sample]:
    ts = EARLY + minute * MIN
    return [
        Sample(TAG + "State", ts, code),
        Sample(TAG + "In", ts, count),
        Sample(TAG + "Waste", ts, count // 20),
    ]


def test_accounts_equal_the_query_through_a_shift_change_with_late_and_early_data(
    rig: MesRig,
) -> None:
    accounts = PeriodAccounts(rig.queries)
    codes = [1, 1, 1, 10, 10, 1, 1, 3, 1, 1, 1, 6, 1]
    held: list[Sample] = []
    for minute in range(40):
        rig.now = EARLY + minute * MIN + 30_000
        samples = _minute(rig, minute, codes[minute % len(codes)], minute * 57)
        if minute % 7 == 3:  # store-and-forward: three minutes late, in reverse
            held = samples + held
            continue
        if minute % 7 == 6:
            samples += held
            held = []
        rig.service.offer(samples)
        _assert_same(rig, accounts)
        # Stamped ahead of the server's clock (an edge whose clock runs fast): a state change
        # and a count the buckets hold but "so far" does not yet.
        ahead = rig.now + 20_000
        rig.service.offer(
            [Sample(TAG + "State", ahead, 10), Sample(TAG + "In", ahead, minute * 57 + 5)]
        )
        _assert_same(rig, accounts)
        rig.now += 25_000  # and now it is behind
        _assert_same(rig, accounts)


def test_accounts_equal_the_query_after_manual_edits_and_count_corrections(rig: MesRig) -> None:
    accounts = PeriodAccounts(rig.queries)
    for minute in range(30):
        rig.service.offer(_minute(rig, minute, 10 if 5 <= minute < 9 else 1, minute * 40))
    rig.now = EARLY + 30 * MIN
    stop = EARLY + 5 * MIN
    rig.service.assign_reason(ASSET, stop, "mech", _no_audit)
    rig.service.split_interval(ASSET, stop + 2 * MIN, _no_audit)
    _assert_same(rig, accounts)
    edits = CountEdits(rig.service)
    # A correction in the past and one reaching ahead of now.
    edits.add(
        ASSET, EARLY + 22 * MIN, EARLY + 25 * MIN, CountEditMode.ADD, (30, None, 2), "sv", "c",
        rig.now, _no_audit,
    )  # fmt: skip
    ahead = edits.add(
        ASSET, EARLY + 29 * MIN, EARLY + 32 * MIN, CountEditMode.ADD, (12, None, None), "sv",
        "c", rig.now, _no_audit,
    )  # fmt: skip
    _assert_same(rig, accounts)
    rig.now = EARLY + 28 * MIN + 1  # the correction (and the last counts) ahead of now
    _assert_same(rig, accounts)
    edits.revert(ahead.id, "sv", rig.now, _no_audit)
    _assert_same(rig, accounts)


def test_an_asset_without_data_has_an_empty_account(rig: MesRig) -> None:
    rig.now = EARLY + 25 * MIN
    _assert_same(rig, PeriodAccounts(rig.queries))


@pytest.mark.parametrize(
    ("zone", "start"),
    [
        ("Asia/Kolkata", T0 + 5 * 3_600_000),  # hours start at :30 UTC
        ("Europe/Prague", 1_774_742_400_000 - 20 * MIN),  # 29 March 2026, clocks go forward
        ("Europe/Prague", 1_792_886_400_000 - 20 * MIN),  # 25 October 2026, clocks go back
        ("Australia/Lord_Howe", 1_775_314_800_000 - 20 * MIN),  # back half an hour: 90-min hour
        ("Australia/Lord_Howe", 1_791_041_400_000 - 20 * MIN),  # forward half an hour
    ],
)
def test_days_in_other_zones_and_across_changes_of_clocks(
    tmp_path: Path, zone: str, start: int
) -> None:
    plant = small_plant(calendar=[])
    plant["asset"][0]["timezone"] = zone
    rig = MesRig(f"sqlite:///{tmp_path / 'z.db'}", parse_plant(plant, "t.toml"), start)
    try:
        accounts = PeriodAccounts(rig.queries)
        for minute in range(0, 90, 3):
            ts = start + minute * MIN
            rig.service.offer(
                [
                    Sample(TAG + "State", ts, 10 if minute % 9 == 0 else 1),
                    Sample(TAG + "In", ts, minute),
                ]
            )
            rig.now = ts - 10_000  # the last sample ahead of now
            _assert_same(rig, accounts)
            rig.now = ts + 50_000
            _assert_same(rig, accounts)
    finally:
        rig.close()
