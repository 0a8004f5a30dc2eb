"""The MES service's window in memory: pruned to the horizon over a long run with late data, the
memory stays bounded and every record is exactly what it is without pruning. Edits of intervals
older than the window: tests/unit/api/test_api_old_intervals.py."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from _mes_rig import CELL, T0, TAG, MesRig

from andon.domain import AssetPath
from andon.storage.schema import (
    MES_ACCOUNT_COLUMNS,
    mes_count_table,
    mes_rollup_reason_table,
    mes_rollup_table,
    mes_state_interval_table,
)
from andon.storage.types import Sample

DAY = 86_400_000
HOUR = 3_600_000
MIN = 60_000
ASSET = AssetPath.parse(CELL)


def _long_run(days: int, seed: int = 3) -> list[Sample]:
    """States every 5 to 40 minutes, a changeover a day, counters every 5 minutes (wrapping at
    the plant's counter_max, and a reset)."""
    rng = random.Random(seed)
    samples: list[Sample] = []
    t = T0
    while t < T0 + days * DAY:
        samples.append(Sample(TAG + "State", t, rng.choice([1, 1, 1, 3, 6, 10])))
        t += rng.randrange(5, 40) * MIN
    for day in range(days):
        samples.append(Sample(TAG + "Mode", T0 + day * DAY + 9 * HOUR, "Changeover"))
        samples.append(Sample(TAG + "Mode", T0 + day * DAY + 9 * HOUR + 30 * MIN, "Production"))
    infeed = waste = 0
    for i, ts in enumerate(range(T0, T0 + days * DAY, 5 * MIN)):
        if i == 1000:
            infeed = waste = 0
        step = rng.randrange(0, 50)
        infeed, waste = (infeed + step) % 10_000, (waste + (step > 45)) % 10_000  # wraps
        samples += [Sample(TAG + "In", ts, infeed), Sample(TAG + "Waste", ts, waste)]
    return sorted(samples, key=lambda s: s.ts_ms)


def _rows(rig: MesRig) -> dict[str, list[tuple[Any, ...]]]:
    rig.flush()
    found = {}
    with rig.repository.engine.connect() as connection:
        for table in (mes_state_interval_table, mes_count_table):
            found[table.name] = sorted(tuple(r) for r in connection.execute(sa.select(table)))
        rollups = connection.execute(sa.select(mes_rollup_table)).mappings()
        found["rollup"] = sorted(
            tuple(r.values()) for r in rollups if any(r[c] for c in MES_ACCOUNT_COLUMNS)
        )
        reasons = connection.execute(sa.select(mes_rollup_reason_table))
        found["reason"] = sorted(tuple(r) for r in reasons if r.loss_ms)
    return found


@pytest.fixture
def rigs(tmp_path: Path) -> Iterator[tuple[MesRig, MesRig]]:
    pruned = MesRig(f"sqlite:///{tmp_path / 'pruned.db'}", horizon_ms=DAY)
    reference = MesRig(f"sqlite:///{tmp_path / 'reference.db'}", horizon_ms=10**13)
    yield pruned, reference
    pruned.close()
    reference.close()


def test_memory_stays_bounded_and_late_data_in_the_horizon_is_derived_exactly(
    rigs: tuple[MesRig, MesRig],
) -> None:
    pruned, reference = rigs
    days = 12
    samples = _long_run(days)
    rng = random.Random(5)
    late: dict[int, list[Sample]] = {}  # hour of delivery -> samples held back until then
    sizes: dict[str, list[int]] = {"pruned": [], "reference": []}
    for hour in range(days * 24 + 21):
        begin = T0 + hour * HOUR
        batch = [s for s in samples if begin <= s.ts_ms < begin + HOUR]
        on_time = []
        for sample in batch:  # a fifth arrives up to 20 hours late (store-and-forward)
            if rng.random() < 0.2:
                late.setdefault(hour + rng.randrange(1, 21), []).append(sample)
            else:
                on_time.append(sample)
        delivery = on_time + late.pop(hour, [])
        rng.shuffle(delivery)
        for rig in (pruned, reference):
            rig.now = begin + HOUR
            rig.service.offer(delivery)
        if hour % 24 == 23:
            sizes["pruned"].append(pruned.service.memory_size(ASSET))
            sizes["reference"].append(reference.service.memory_size(ASSET))
    one_day = sizes["reference"][0]
    assert max(sizes["pruned"][2:]) <= 2 * one_day  # horizon + pruning step + late slack
    assert sizes["reference"][-1] >= (days - 1) * one_day  # what it would grow to
    assert pruned.service.skipped_total == reference.service.skipped_total == 0
    assert _rows(pruned) == _rows(reference)
