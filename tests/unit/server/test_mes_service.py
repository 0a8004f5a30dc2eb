"""MesService end to end on SQLite through the real historian writer: late and out-of-order
data ends exactly as live data, and the OEE the API serves equals ``account_for``."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from _mes_rig import CELL, T0, TAG, MesRig
from fastapi import FastAPI
from fastapi.testclient import TestClient

from andon.api import mes as mes_api
from andon.domain import AssetPath, account_for
from andon.server._mes_derive import dropped_counter_jumps
from andon.storage.schema import (
    MES_ACCOUNT_COLUMNS,
    mes_count_table,
    mes_rollup_reason_table,
    mes_rollup_table,
    mes_state_interval_table,
)
from andon.storage.types import Sample

DAY = 86_400_000
ASSET = AssetPath.parse(CELL)


def scripted_day(seed: int = 7) -> list[Sample]:
    """A day of state changes (seconds to an hour apart), a mode change, counters each minute
    with a reset and waste counted with the infeed."""
    rng = random.Random(seed)
    samples: list[Sample] = []
    t = T0 - 3_600_000
    while t < T0 + DAY + 3_600_000:
        samples.append(Sample(TAG + "State", t, rng.choice([1, 1, 1, 3, 6, 10, 42])))
        t += rng.choice([1_000, 30_000, 240_000, 400_000, 3_600_000])
    samples.append(Sample(TAG + "Mode", T0 + 9 * 3_600_000, "Changeover"))
    samples.append(Sample(TAG + "Mode", T0 + 10 * 3_600_000, "Production"))
    infeed = waste = 0
    for i, ts in enumerate(range(T0 - 600_000, T0 + DAY + 600_000, 60_000)):
        if i == 700:
            infeed = waste = 0  # operator reset
        step = rng.randrange(0, 25)
        infeed = (infeed + step) % 10_000
        waste = (waste + (1 if step > 20 else 0)) % 10_000
        samples.append(Sample(TAG + "In", ts, infeed))
        samples.append(Sample(TAG + "Waste", ts, waste))
    return samples


def snapshot(rig: MesRig) -> dict[str, list[tuple[object, ...]]]:
    """Every MES row, with rollups that were retracted to zero left out."""
    rig.flush()
    found = {}
    with rig.repository.engine.connect() as connection:
        for table in (mes_state_interval_table, mes_count_table):
            found[table.name] = sorted(tuple(r) for r in connection.execute(sa.select(table)))
        rollups = connection.execute(sa.select(mes_rollup_table)).mappings()
        found["mes_rollup"] = sorted(
            tuple(r.values()) for r in rollups if any(r[c] for c in MES_ACCOUNT_COLUMNS)
        )
        reasons = connection.execute(sa.select(mes_rollup_reason_table))
        found["mes_rollup_reason"] = sorted(tuple(r) for r in reasons if r.loss_ms)
    return found


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[object]:
    rigs: list[MesRig] = []

    def make(name: str) -> MesRig:
        rig = MesRig(f"sqlite:///{tmp_path / name}.db")
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


def test_late_and_reordered_data_gives_the_same_records_as_live(make_rig: object) -> None:
    samples = scripted_day()
    live = make_rig("live")  # type: ignore[operator]
    for sample in sorted(samples, key=lambda s: s.ts_ms):
        live.service.offer([sample])  # one value per message, in order
    expected = snapshot(live)
    assert expected["mes_state_interval"]
    assert expected["mes_count"]
    assert expected["mes_rollup"]

    for seed in (1, 2):
        late = make_rig(f"late{seed}")  # type: ignore[operator]
        rng = random.Random(seed)
        shuffled = samples[:]
        rng.shuffle(shuffled)
        position = 0
        while position < len(shuffled):
            size = rng.randrange(1, 400)
            chunk = [
                Sample(s.tag, s.ts_ms, s.value, is_historical=rng.random() < 0.5)
                for s in shuffled[position : position + size]
            ]
            late.service.offer(chunk)
            position += size
        assert snapshot(late) == expected


def test_oee_through_the_api_equals_account_for(make_rig: object) -> None:
    rig = make_rig("oee")  # type: ignore[operator]
    rig.service.offer(scripted_day())
    rig.flush()
    rig.now = T0 + DAY + 2 * 3_600_000
    app = FastAPI()
    app.state.context = SimpleNamespace(mes=rig.queries)
    app.include_router(mes_api.router)
    client = TestClient(app)

    intervals = rig.service._assets[ASSET].intervals.intervals
    counts = rig.repository.counts(ASSET, T0 - DAY, T0 + 2 * DAY)
    calendar = rig.plant.calendar_for(ASSET)
    assert calendar is not None
    # Whole hours, and a period with ragged edges (partial hours come from raw records).
    for start, end in ((T0, T0 + DAY), (T0 + 1_234_567, T0 + DAY - 777_777)):
        expected = account_for(
            intervals,
            counts,
            start,
            end,
            shifts=calendar.shifts_between(start, end),
            ideal_cycle_ms=rig.service.cycle_time_ms,
        )
        for by in ("hour", "day", "shift"):
            answer = client.get(
                "/api/v1/oee", params={"asset": "Site/Area/Line", "start": start, "end": end,
                                       "by": by}
            )  # fmt: skip
            assert answer.status_code == 200, answer.text
            body = answer.json()
            account = body["total"]["account"]
            for name in (
                "running_ms",
                "unplanned_downtime_ms",
                "blocked_ms",
                "setup_ms",
                "planned_downtime_ms",
                "not_scheduled_ms",
                "no_data_ms",
                "failures",
                "total_count",
                "reject_count",
                "ideal_time_us",
                "small_stop_ms",
            ):
                assert account[name] == getattr(expected, name), name
            assert account["loss_by_reason"] == dict(expected.loss_by_reason)
            assert body["total"]["oee"] == pytest.approx(expected.oee)
            assert body["total"]["mtbf_ms"] == pytest.approx(expected.mtbf_ms)
            if by != "shift":  # buckets tile the period: their sum is the total
                summed = sum(b["account"]["running_ms"] for b in body["buckets"])
                assert summed == expected.running_ms
    pareto = client.get(
        "/api/v1/downtime/pareto", params={"asset": "Site", "start": T0, "end": T0 + DAY}
    ).json()
    assert pareto
    assert pareto[0]["share"] >= pareto[-1]["share"]
    assets = client.get("/api/v1/assets").json()
    cell = next(a for a in assets if a["path"] == CELL)
    assert cell["state"] is not None
    assert cell["run"]["order_id"] == "PO1"
    states = client.get(f"/api/v1/assets/{CELL}/states", params={"start": T0, "end": T0 + DAY})
    assert states.status_code == 200
    assert states.json()
    assert client.get("/api/v1/runs", params={"asset": "Site"}).json()[0]["id"] == "R1"
    unknown = client.get("/api/v1/oee", params={"asset": "Nope", "start": 0, "end": 1})
    assert unknown.status_code == 404


def test_restart_derives_what_the_history_holds_beyond_the_stored_records(
    tmp_path: Path,
) -> None:
    from andon.server.mes_recovery import recover

    samples = sorted(scripted_day(), key=lambda s: s.ts_ms)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    first = MesRig(url)
    half = len(samples) // 2
    first.writer.submit(samples)  # the whole history is committed ...
    first.service.offer(samples[:half])  # ... but the MES records only for half of it
    first.flush()
    first.close()

    second = MesRig(url)
    recover(second.service, second.store, T0 + 2 * DAY)
    got = snapshot(second)
    second.close()

    reference = MesRig(f"sqlite:///{tmp_path / 'ref.db'}")
    reference.service.offer(samples)
    expected = snapshot(reference)
    reference.close()
    assert got == expected


def test_a_restarted_counter_does_not_add_phantom_production(make_rig: object) -> None:
    """The demo's simulator (or a replaced PLC) comes back with an unrelated counter value: the
    jump is not production; counting resumes from the new value."""
    rig = make_rig("restart")  # type: ignore[operator]
    rig.now = T0 + 600_000
    rig.service.offer([Sample(TAG + "State", T0, 1)])
    readings = [(0, 100), (60_000, 130), (120_000, 9_102), (180_000, 9_142)]
    rig.service.offer([Sample(TAG + "In", T0 + dt, v) for dt, v in readings])
    rig.service.offer([Sample(TAG + "Waste", T0 + dt, 0) for dt, _ in readings])
    rig.flush()
    account = rig.queries.account(ASSET, T0, T0 + 600_000)
    assert account.total_count == 30 + 40
    assert dropped_counter_jumps()[(CELL, "infeed")] >= 1  # on /metrics


def test_offer_names_the_assets_of_bound_samples_with_their_newest_time(
    make_rig: object,
) -> None:
    rig = make_rig("touched")  # type: ignore[operator]
    batch = [
        Sample(TAG + "State", T0 + 2_000, 1),
        Sample(TAG + "In", T0 + 5_000, 10),
        Sample(TAG + "State", T0 + 1_000, 3),  # older, in the same batch
        Sample("Plant/Unbound/Speed", T0 + 9_000, 1.5),
    ]
    assert rig.service.offer(batch) == {ASSET: T0 + 5_000}
    assert rig.service.offer([Sample("Plant/Unbound/Speed", T0 + 10_000, 2.0)]) == {}
