"""The MES across a switchover: what the new leader stores is what one node alone would have.

A passive node derives (hot state for its UI) but stores nothing; rollups are increments, so on
promotion it empties its builders and re-derives from what the database holds. The check: the
intervals, counts and rollups in the cluster's database equal those of a single MES fed the
same samples in one go (``andon.testing.mes.MesRig``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cluster_rig import PASSWORD, Edge, Rig
from fastapi.testclient import TestClient

from andon.domain import AssetPath
from andon.server.mes_server import MesServer
from andon.server.plant_file import load_plant
from andon.sparkplug.model import DataType, Metric
from andon.storage.mes import MesRepository
from andon.storage.types import Sample
from andon.testing.mes import MesRig
from andon.testing.processes import wait_until

ASSET = AssetPath.parse("Site/Line/M1")
STATE, COUNT = "Plant/Edge1/M1/State", "Plant/Edge1/M1/In"
PLANT = """
[[asset]]
path = "Site"
kind = "site"
timezone = "UTC"

[[asset]]
path = "Site/Line"
kind = "line"

[[asset]]
path = "Site/Line/M1"
kind = "cell"
state_map = "m"
counter_max = 1000000
[asset.tags]
state = "Plant/Edge1/M1/State"
infeed = "Plant/Edge1/M1/In"

[state_map.m]
[[state_map.m.state]]
code = 1
name = "Running"
type = "running"
[[state_map.m.state]]
code = 10
name = "Jam"
type = "unplanned_downtime"
"""


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)
    try:
        yield made
    finally:
        made.close()


def _samples(start_ms: int, first: int, count: int) -> list[tuple[int, int, int]]:
    """(ts, state code, counter): running mostly, a jam every 20 s, one part a second."""
    return [
        (start_ms + i * 1000, 10 if (first + i) % 20 >= 17 else 1, first + i) for i in range(count)
    ]


def _send(edge: Edge, rows: list[tuple[int, int, int]]) -> None:
    for ts, code, counter in rows:
        edge.publish([Metric("State", code, timestamp=ts), Metric("In", counter, timestamp=ts)], ts)


def _snapshot(repository: MesRepository) -> tuple[object, ...]:
    intervals = [(i.start_ms, i.end_ms, i.code) for i in repository.intervals(ASSET, 0, 2**62)]
    counts = [(c.ts_ms, c.total, c.reject) for c in repository.counts(ASSET, 0, 2**62)]
    rollups = repository.rollup_total([ASSET], "hour", 0, 2**62)
    return intervals, counts, rollups


def test_after_a_switchover_the_mes_holds_what_one_node_would(rig: Rig, tmp_path: Path) -> None:
    plant_file = tmp_path / "plant.toml"
    plant_file.write_text(PLANT, encoding="utf-8")
    a = rig.start("a", plant_file=plant_file)
    b = rig.start("b", plant_file=plant_file)
    rig.wait_role("a", "active")
    assert a.cluster is not None
    start = (time.time_ns() // 1_000_000) - 900_000
    edge = Edge(rig.broker, device="M1")
    edge.ts = start - 1000
    edge.birth([Metric("State", 1, DataType.INT32), Metric("In", 0, DataType.UINT32)])
    before = _samples(start, 0, 150)
    after = _samples(start + 150_000, 150, 150)
    _send(edge, before[:100])
    wait_until(lambda: a.store.count() >= 2 + 2 * 100, 10, "a did not store the samples")
    assert a.historian.flush(10.0)
    # The leader stores the next samples but not what it derives from them, as a leader that
    # dies between the two commits does: the next one must derive them again.
    a.historian.gate.close("plant")
    _send(edge, before[100:])
    wait_until(lambda: a.store.count() >= 2 + 2 * 150, 10, "a did not store the first half")
    assert a.mes_repository.last_count_ts(ASSET) == before[99][0]

    a.cluster.arbiter.request_switchover("plant", "b", 1500)
    rig.wait_role("b", "active")
    _send(edge, after)
    wait_until(lambda: b.store.count() >= 2 + 2 * 300, 10, "b did not store the second half")
    assert b.historian.flush(10.0)
    assert b.mes is not None
    assert b.mes_repository.last_count_ts(ASSET) == after[-1][0]

    reference = MesRig(
        f"sqlite:///{tmp_path / 'reference.db'}",
        load_plant(plant_file),
        now_ms=start + 300_000,
        clock=lambda: start + 300_000,
    )
    try:
        born = start - 1000
        samples = [Sample(STATE, born, 1, datatype=3), Sample(COUNT, born, 0, datatype=7)]
        for ts, code, counter in before + after:
            samples += [Sample(STATE, ts, code, datatype=3), Sample(COUNT, ts, counter, datatype=7)]
        reference.service.offer(samples)
        reference.flush()
        expected = _snapshot(reference.repository)
    finally:
        reference.close()
    assert _snapshot(b.mes_repository) == expected
    assert expected[2].total_count == 299  # type: ignore[attr-defined]  # counter 0 -> 299


def test_manual_edits_go_to_the_active_node_only(rig: Rig, tmp_path: Path) -> None:
    plant_file = tmp_path / "plant.toml"
    plant_file.write_text(PLANT, encoding="utf-8")
    a = rig.start("a", plant_file=plant_file)
    b = rig.start("b", plant_file=plant_file)
    rig.wait_role("a", "active")
    assert b.cluster is not None
    cluster = b.cluster
    wait_until(lambda: cluster.view.holder("plant") == "a", 5, "b never read a's lease")
    start = (time.time_ns() // 1_000_000) - 60_000
    edge = Edge(rig.broker, device="M1")
    edge.ts = start - 1000
    edge.birth([Metric("State", 1, DataType.INT32), Metric("In", 0, DataType.UINT32)])
    _send(edge, _samples(start, 0, 10))
    wait_until(lambda: a.store.count() >= 22, 10, "a did not store the samples")
    assert a.historian.flush(10.0)
    wait_until(lambda: b.mes is not None and b.mes.current(ASSET) is not None, 5, "b not hot")

    body = {"mode": "Maintenance", "comment": "planned work"}
    passive, active = _client(b), _client(a)
    refused = passive.put("/api/v1/assets/Site/Line/M1/mode", json=body)
    assert refused.status_code == 409
    assert "writes go to the active node, a at http://127.0.0.1:" in refused.json()["detail"]
    assert active.put("/api/v1/assets/Site/Line/M1/mode", json=body).status_code == 200
    # Reads work on the passive node; its system page shows the cluster.
    assert passive.get("/api/v1/assets").status_code == 200
    page = passive.get("/system")
    assert page.status_code == 200
    assert "Cluster" in page.text
    assert "passive" in page.text


def _client(server: MesServer) -> TestClient:
    client = TestClient(server.api)
    token = client.post(
        "/api/v1/auth/token", json={"username": "admin", "password": PASSWORD}
    ).json()["access_token"]
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def test_only_the_leader_publishes_the_site_outbox(rig: Rig, tmp_path: Path) -> None:
    """R-05 for the outbox: one shared outbox, dispatched by the first domain's leader only."""
    plant_file = tmp_path / "plant.toml"
    plant_file.write_text(PLANT, encoding="utf-8")
    a = rig.start("a", plant_file=plant_file, outbox={"enabled": True, "site": "Plant"})
    b = rig.start("b", plant_file=plant_file, outbox={"enabled": True, "site": "Plant"})
    rig.wait_role("a", "active")
    assert a.forwarding.outbox is not None
    assert b.forwarding.outbox is not None
    assert a.forwarding.outbox._may_publish()
    assert not b.forwarding.outbox._may_publish()
    rig.stop("a")  # a clean stop hands over: b leads and takes the outbox with it
    rig.wait_role("b", "active")
    assert b.forwarding.outbox._may_publish()
