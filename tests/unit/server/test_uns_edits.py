"""The UNS mirror after manual edits: every stored edit (reason, split, added state, run, count
edit and its revert) republishes the asset's retained documents at once, with a new key, on the
in-memory broker; and ``MesServer`` wires it."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from _mes_rig import CELL, T0, TAG, MesRig

from andon.domain import AssetPath, CountEditMode, StateOverride
from andon.mqtt.interface import MqttEndpoint
from andon.server.mes_count_edits import CountEdits
from andon.server.mes_server import MesServer
from andon.server.uns import UnsPublisher
from andon.settings import ServerSettings
from andon.storage.types import Sample
from andon.testing.memory_broker import InMemoryBroker, InMemoryBrokerClient

REPO = Path(__file__).resolve().parents[3]
ASSET = AssetPath.parse(CELL)
START = T0 + 7 * 3_600_000  # 07:00 local, in the day shift


class _Listener:
    def on_connected(self) -> None:
        pass

    def on_disconnected(self, reason: str) -> None:
        pass


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[MesRig, UnsPublisher, InMemoryBroker, _Clock]]:
    rig = MesRig(f"sqlite:///{tmp_path / 'u.db'}", now_ms=START + 600_000)
    broker = InMemoryBroker()
    client = broker.client("host", on_message=lambda t, p: None, listener=_Listener())
    client.start()
    clock = _Clock()
    host = SimpleNamespace(online=True, client=client)
    uns = UnsPublisher(
        rig.queries, [host],  # type: ignore[list-item]
        flush=rig.writer.flush, monotonic=clock,
    )  # fmt: skip
    rig.service.edit_listeners.append(uns.edited)
    try:
        yield rig, uns, broker, clock
    finally:
        rig.close()


def _sent(broker: InMemoryBroker) -> int:
    return sum(1 for topic, *_ in broker.published if topic == f"andon/v1/{CELL}/state")


def _doc(broker: InMemoryBroker, kind: str = "state") -> dict[str, Any]:
    return json.loads(broker.retained[f"andon/v1/{CELL}/{kind}"])  # type: ignore[no-any-return]


def _no_audit(*_: object) -> None:
    """Edits made straight through the service here: their audit is the API's (tested there)."""


def test_every_kind_of_edit_republishes_the_asset(
    mirror: tuple[MesRig, UnsPublisher, InMemoryBroker, _Clock],
) -> None:
    rig, uns, broker, clock = mirror
    feed = [Sample(TAG + "State", START, 1), Sample(TAG + "State", START + 120_000, 10)]
    feed += [Sample(TAG + "In", START, 0), Sample(TAG + "In", START + 60_000, 50)]
    uns.changed(rig.service.offer(feed))
    uns.pump()
    keys = [_doc(broker)["key"]]
    service, jam = rig.service, START + 120_000

    def republished(check: Callable[[dict[str, Any], dict[str, Any]], bool]) -> None:
        sent = _sent(broker)
        clock.now += 1.0  # past the per-asset interval: the edit alone must trigger it
        assert uns.pump() is None
        assert _sent(broker) == sent + 1
        state, oee = _doc(broker), _doc(broker, "oee")
        assert state["key"] not in keys
        assert oee["key"] == state["key"].replace("/state/", "/oee/")
        keys.append(state["key"])
        assert check(state, oee)

    service.assign_reason(ASSET, jam, "mech", _no_audit)
    republished(lambda s, _: s["reason"]["id"] == "mech")
    service.split_interval(ASSET, jam + 60_000, _no_audit)
    republished(lambda s, _: s["state"]["since_ms"] == jam + 60_000)
    edits = CountEdits(service)
    edit = edits.add(
        ASSET, START, START + 600_000, CountEditMode.ADD, (100, None, None), "sv", "c",
        rig.now, _no_audit,
    )  # fmt: skip
    republished(lambda s, o: s["counts"]["total"] == 150 and o["total_count"] == 150)
    edits.revert(edit.id, "sv", rig.now, _no_audit)
    republished(lambda s, _: s["counts"]["total"] == 50)
    stop = StateOverride(START + 30_000, START + 90_000, 3)
    service.edit_intervals(ASSET, lambda b: b.add_override(stop), _no_audit, since_ms=stop.start_ms)
    republished(lambda _, o: o["running_ms"] == 60_000)
    service.end_run("R1", START + 300_000, None)
    republished(lambda s, _: s["run"] is None)


def test_the_server_republishes_after_an_edit(tmp_path: Path) -> None:
    broker = InMemoryBroker()

    def factory(endpoint: MqttEndpoint, **kwargs: Any) -> InMemoryBrokerClient:
        return broker.client(endpoint.client_id, **kwargs)

    settings = ServerSettings(
        host_id="uns-edits",
        database_url=f"sqlite:///{tmp_path / 's.db'}",
        plant_file=REPO / "examples" / "plant.toml",
    )
    server = MesServer(settings, client_factory=factory, serve_http=False)
    server.start()
    try:
        assert server.host.wait_online(5.0)
        assert server.mes is not None
        assert server.mes_queries is not None
        filler = AssetPath.parse("Plant1/Bottling/Line1/Filler1")
        assert server.uns is not None
        assert server.uns.edited in server.mes.edit_listeners
        now = server.mes_queries.now_ms()
        start, _, _ = server.mes_queries.current_period(filler, now)
        CountEdits(server.mes).add(
            filler, start, max(now, start + 1), CountEditMode.ADD, (7, None, None), "sv", "c",
            now, _no_audit,
        )  # fmt: skip
        topic = f"andon/v1/{filler}/state"
        edited = threading.Event()

        def on_message(got_topic: str, payload: bytes) -> None:
            # The publisher runs on its own thread: it delivers here when it republishes.
            if got_topic == topic and json.loads(payload)["counts"]["total"] == 7:
                edited.set()

        watcher = broker.client("watcher", on_message=on_message, listener=_Listener())
        watcher.start()
        assert watcher.subscribe([(topic, 1)])  # also delivers the retained document
        try:
            assert edited.wait(10.0), f"no republished document with the edited count on {topic}"
        finally:
            watcher.stop()
    finally:
        server.stop()
