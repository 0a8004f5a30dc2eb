"""The UNS JSON mirror: retained documents after samples, the per-asset debounce, and the
republish when the host session reconnects."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from _mes_rig import CELL, T0, TAG, MesRig

from andon.mqtt.interface import MqttEndpoint
from andon.server.mes_server import MesServer
from andon.server.uns import UnsPublisher
from andon.settings import ServerSettings
from andon.storage.types import Sample
from andon.testing.memory_broker import InMemoryBroker, InMemoryBrokerClient

REPO = Path(__file__).resolve().parents[3]
FILLER = "Plant1/Bottling/Line1/Filler1"
FILLER_TAG = "DemoPlant/Line1/Filler1/"


class _Listener:
    def on_connected(self) -> None:
        pass

    def on_disconnected(self, reason: str) -> None:
        pass


def _until(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll a condition (the publisher runs on its own thread) until it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError("condition not reached")


# -- the publisher alone, with a hand-moved clock ---------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[MesRig, UnsPublisher, InMemoryBroker, _Clock]]:
    rig = MesRig(f"sqlite:///{tmp_path / 'u.db'}")
    broker = InMemoryBroker()
    client = broker.client("host", on_message=lambda t, p: None, listener=_Listener())
    client.start()
    clock = _Clock()
    host = SimpleNamespace(online=True, client=client)
    uns = UnsPublisher(
        rig.queries, [host],  # type: ignore[list-item]
        flush=rig.writer.flush, monotonic=clock,
    )  # fmt: skip
    try:
        yield rig, uns, broker, clock
    finally:
        rig.close()


def _feed(rig: MesRig, uns: UnsPublisher, samples: list[Sample]) -> None:
    uns.changed(rig.service.offer(samples))


def _doc(broker: InMemoryBroker, kind: str, asset: str = CELL) -> dict[str, Any]:
    return json.loads(broker.retained[f"andon/v1/{asset}/{kind}"])  # type: ignore[no-any-return]


def test_documents_carry_state_mode_reason_run_counts_and_oee(
    rig: tuple[MesRig, UnsPublisher, InMemoryBroker, _Clock],
) -> None:
    mes, uns, broker, _ = rig
    start = T0 + 7 * 3_600_000  # 07:00 local, in the day shift
    mes.now = start + 600_000
    _feed(mes, uns, [Sample(TAG + "State", start, 1), Sample(TAG + "In", start, 0)])
    _feed(mes, uns, [Sample(TAG + "In", start + 60_000, 50), Sample(TAG + "Waste", start, 0)])
    _feed(mes, uns, [Sample(TAG + "Waste", start + 60_000, 5)])
    _feed(mes, uns, [Sample(TAG + "State", start + 120_000, 10)])
    assert uns.pump() is None
    state, oee = _doc(broker, "state"), _doc(broker, "oee")
    assert state["key"] == f"{CELL}/state/{start + 120_000}"
    assert state["state"] == {
        "code": 10, "name": "Jam", "type": "unplanned_downtime",
        "since": "2026-03-02T06:02:00.000Z", "since_ms": start + 120_000,
    }  # fmt: skip
    assert state["mode"] == "Production"
    assert state["reason"] == {"id": "jam", "path": ["Mechanical", "Jam"]}
    assert state["run"]["id"] == "R1"
    assert state["run"]["item_id"] == "w"
    assert state["counts"]["shift"] == "2026-03-02/Day"
    assert (state["counts"]["total"], state["counts"]["good"]) == (50, 45)
    assert state["time_ms"] == mes.now
    assert state["time"] == "2026-03-02T06:10:00.000Z"
    assert oee["key"] == f"{CELL}/oee/{start + 120_000}"
    assert oee["shift"] == "2026-03-02/Day"
    assert oee["running_ms"] == 120_000
    assert oee["unplanned_downtime_ms"] == 480_000
    assert oee["availability"] == pytest.approx(0.2)
    assert oee["quality"] == pytest.approx(0.9)
    published = [p for p in broker.published if p[0].startswith("andon/v1/")]
    assert {(qos, retain) for _, _, qos, retain in published} == {(1, True)}


def test_debounce_publishes_each_asset_at_most_once_per_interval(
    rig: tuple[MesRig, UnsPublisher, InMemoryBroker, _Clock],
) -> None:
    mes, uns, broker, clock = rig
    mes.now = T0 + 3_600_000
    for i in range(5):
        _feed(mes, uns, [Sample(TAG + "State", T0 + i * 1000, 1 if i % 2 else 3)])
        uns.pump()
    state_topic = f"andon/v1/{CELL}/state"

    def sent() -> int:
        return sum(1 for topic, *_ in broker.published if topic == state_topic)

    assert sent() == 1  # the first change went out, the next four wait
    assert _doc(broker, "state")["state"]["code"] == 3
    clock.now += 0.5
    assert uns.pump() == pytest.approx(101.0)
    assert sent() == 1
    clock.now += 0.5
    assert uns.pump() is None
    assert sent() == 2
    latest = _doc(broker, "state")
    assert latest["state"]["code"] == 3  # the last of the burst (i = 4)
    assert latest["key"] == f"{CELL}/state/{T0 + 4000}"
    clock.now += 5
    assert uns.pump() is None
    assert sent() == 2  # nothing changed: nothing sent


# -- wired into MesServer, on the in-memory broker --------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[MesServer, InMemoryBroker]]:
    broker = InMemoryBroker()

    def factory(endpoint: MqttEndpoint, **kwargs: Any) -> InMemoryBrokerClient:
        return broker.client(endpoint.client_id, **kwargs)

    settings = ServerSettings(
        host_id="uns",
        database_url=f"sqlite:///{tmp_path / 's.db'}",
        plant_file=REPO / "examples" / "plant.toml",
    )
    mes = MesServer(settings, client_factory=factory, serve_http=False)
    mes.start()
    try:
        assert mes.host.wait_online(5.0)
        yield mes, broker
    finally:
        mes.stop()


def test_server_publishes_retained_documents_and_republishes_on_reconnect(
    server: tuple[MesServer, InMemoryBroker],
) -> None:
    mes, broker = server
    now = time.time_ns() // 1_000_000
    mes._derive([Sample(FILLER_TAG + "State/Code", now - 5000, 5)])
    topic = f"andon/v1/{FILLER}/state"

    def filler_state() -> dict[str, Any] | None:
        raw = broker.retained.get(topic)
        document = None if raw is None else json.loads(raw)
        ok = document is not None and document["state"] is not None
        return document if ok and document["state"]["code"] == 5 else None

    document = _until(filler_state)
    assert document["key"] == f"{FILLER}/state/{now - 5000}"
    assert document["state"]["name"] == "Changeover"
    assert f"andon/v1/{FILLER}/oee" in broker.retained
    # A broker restarted without persistence: the retained copies are gone until reconnect.
    broker.set_online(False)
    broker.retained.clear()
    broker.set_online(True)
    assert mes.host.wait_online(5.0)
    again = _until(filler_state)
    assert again["key"] == document["key"]  # same data, same idempotency key
    assert _until(lambda: f"andon/v1/{FILLER}/oee" in broker.retained)


def test_uns_can_be_switched_off(tmp_path: Path) -> None:
    settings = ServerSettings(
        host_id="off",
        database_url=f"sqlite:///{tmp_path / 'o.db'}",
        plant_file=REPO / "examples" / "plant.toml",
        uns_enabled=False,
    )
    broker = InMemoryBroker()
    mes = MesServer(
        settings,
        client_factory=lambda endpoint, **kw: broker.client(endpoint.client_id, **kw),
        serve_http=False,
    )
    assert mes.uns is None
    assert mes.host.online_listeners == []
    mes.store.close()
    mes.mes_repository.close()
    mes.users.repository.close()


class _RefusingClient:
    """A broker client whose queue is full for the first ``refusals`` publishes."""

    def __init__(self, inner: InMemoryBrokerClient, refusals: int) -> None:
        self.inner, self.refusals = inner, refusals

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> Any:
        if self.refusals > 0:
            self.refusals -= 1
            return SimpleNamespace(done=True, acknowledged=False)
        return self.inner.publish(topic, payload, qos, retain)


def test_a_document_the_client_refused_is_sent_again_after_the_interval(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mes = MesRig(f"sqlite:///{tmp_path / 'r.db'}")
    broker = InMemoryBroker()
    inner = broker.client("host", on_message=lambda t, p: None, listener=_Listener())
    inner.start()
    clock = _Clock()
    client = _RefusingClient(inner, refusals=2)  # both documents of the first round
    host = SimpleNamespace(online=True, client=client)
    uns = UnsPublisher(
        mes.queries, [host],  # type: ignore[list-item]
        flush=mes.writer.flush, monotonic=clock,
    )  # fmt: skip
    try:
        mes.now = T0 + 3_600_000
        _feed(mes, uns, [Sample(TAG + "State", T0, 1)])
        assert uns.pump() == pytest.approx(101.0)  # refused: due again after the interval
        assert f"andon/v1/{CELL}/state" not in broker.retained
        assert uns.refused_total == 1
        clock.now += 1.0
        assert uns.pump() is None  # the broker takes it now: nothing waits
        assert _doc(broker, "state")["state"]["code"] == 1
        assert _doc(broker, "oee")["asset"] == CELL
        warnings = [r for r in caplog.records if "refused documents" in r.getMessage()]
        assert len(warnings) == 1  # logged once for the episode, not per document
    finally:
        mes.close()
