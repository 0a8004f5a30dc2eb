"""The hourly and daily trends, read from the stored rollups as plain rows, equal bucket by bucket
the account of the raw records (``account_for``, the computation the rollups replace) on a
generated multi-day history of two machines: across the spring DST change, with shifts and
breaks, a machine without an ideal rate, the open interval running past the last data, hours
with counts but no closed interval, hours with no rollup and hours after now. One machine reads
its rows as stored, a line sums its machines per hour; SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from datetime import time as wall_time
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest

from andon.bench.query import ASSET, generate_year
from andon.bench.query import _plant_doc as bench_plant
from andon.domain import AssetPath, TimeAccount, account_for, local_to_utc_ms
from andon.domain.oee import SUMMED_FIELDS
from andon.server.mes_queries import Bucket
from andon.server.mes_service import MesService
from andon.server.plant_file import parse_plant
from andon.storage.types import Sample
from andon.testing.mes import MesRig

HOUR = 3_600_000
DAY = 24 * HOUR
ZONE = ZoneInfo("Europe/Prague")
DAYS = 3
START = local_to_utc_ms(date(2025, 3, 29), wall_time(0), ZONE)  # 2025-03-30 has 23 hours
DATA_END = START + DAYS * DAY
NOW = DATA_END + 90 * 60_000 + 4_321
M1 = AssetPath.parse(ASSET)
M2 = AssetPath.parse("Bench/Area/Line/M2")
LINE = AssetPath.parse("Bench/Area/Line")


class _Capture:
    """Stands in for the service in ``generate_year``: keeps what it is offered."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []

    def offer(self, samples: list[Sample]) -> None:
        self.samples += samples


def _plant() -> dict[str, Any]:
    doc = bench_plant()
    second = dict(cast(list[dict[str, Any]], doc["asset"])[-1])
    second["path"] = str(M2)
    second["tags"] = {k: v.replace("/M1/", "/M2/") for k, v in second["tags"].items()}
    cast(list[dict[str, Any]], doc["asset"]).append(second)  # no ideal rate: unrated pieces
    return doc


def _history() -> list[Sample]:
    """The bench's generated days for M1; for M2 the same counters 17 s later and its own
    states."""
    capture = _Capture()
    generate_year(cast(MesService, capture), START, DAYS)
    rng = random.Random(5)
    second = []
    for s in capture.samples:
        value = rng.choice((1, 1, 3, 5, 6, 10)) if s.tag.endswith("State/Code") else s.value
        second.append(Sample(s.tag.replace("/M1/", "/M2/"), s.ts_ms + 17_000, value))
    return capture.samples + second


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MesRig]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'andon.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    rig = MesRig(url, parse_plant(_plant(), "bench.toml"), NOW)
    rig.service.offer(_history())
    rig.flush()
    yield rig
    rig.close()


def _expected(rig: MesRig, leaves: list[AssetPath], start: int, end: int) -> TimeAccount:
    """From the raw intervals and counts; the open interval ends at now, and after now there
    is no data."""
    calendar = rig.plant.calendar_for(M1)
    assert calendar is not None
    cut = min(end, NOW)
    total = TimeAccount()
    for leaf in leaves:
        account = TimeAccount()
        if start < cut:
            account = account_for(
                rig.queries.intervals(leaf, start, cut),
                rig.repository.counts(leaf, start, cut),
                start,
                cut,
                shifts=calendar.shifts_between(start, cut),
                ideal_cycle_ms=rig.service.cycle_time_ms,
                small_stop_ms=rig.service.small_stop_ms,
            )
        total += replace(account, no_data_ms=account.no_data_ms + end - max(start, cut))
    return total


def _values(account: TimeAccount) -> tuple[int, ...]:
    return tuple(getattr(account, name) for name in SUMMED_FIELDS)


def _check(
    rig: MesRig, buckets: list[Bucket], leaves: list[AssetPath], start: int, end: int
) -> None:
    assert buckets[0].start_ms == start
    assert buckets[-1].end_ms == end
    assert all(a.end_ms == b.start_ms for a, b in itertools.pairwise(buckets))
    for bucket in buckets:
        expected = _expected(rig, leaves, bucket.start_ms, bucket.end_ms)
        assert _values(bucket.account) == _values(expected), bucket
        assert bucket.account.oee == pytest.approx(expected.oee)


#: Whole hours to after now (a partial hour at the end), partial hours at both edges, one hour.
PERIODS = [
    (START, NOW + 3 * HOUR + 5),
    (START + 1_234_567, DATA_END - 7_654_321),
    (START + 600_000, START + 3_000_000),
]


def test_trend_buckets_equal_the_account_of_the_raw_records(rig: MesRig) -> None:
    for asset, leaves in ((M1, [M1]), (LINE, [M1, M2])):
        assert rig.queries.leaves(asset) == leaves
        for start, end in PERIODS:
            hours = rig.queries.hourly(asset, start, end)
            _check(rig, hours, leaves, start, end)
            inside = range(start - start % HOUR + HOUR, end, HOUR)  # UTC hours are local hours
            assert len(hours) == len(inside) + 1
        # The history holds hours that no stored rollup does: the open interval's.
        stored = rig.service.aggregates.account_rows(leaves, "hour", START, NOW + 3 * HOUR)
        assert len(stored) < len(rig.queries.hourly(asset, START, NOW + 3 * HOUR))
        days = rig.queries.daily(asset, START, NOW + 3 * HOUR)
        assert [d.end_ms - d.start_ms for d in days[:3]] == [DAY, DAY - HOUR, DAY]  # DST: 23 h
        _check(rig, days, leaves, START, days[-1].end_ms)
