"""H-07: the host connects to several brokers at once, births on each, a STATE T per broker."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from andon.edge.agent import EdgeAgent
from andon.mqtt.interface import MqttEndpoint
from andon.mqtt.paho_client import PahoBrokerClient
from andon.server.mes_server import MesServer
from andon.settings import EdgeSettings, MqttSettings, ServerSettings, SpoolSettings
from andon.sparkplug.codec import decode_state
from andon.testing.brokers import MosquittoBroker

pytestmark = pytest.mark.integration


class _Quiet:
    def on_connected(self) -> None:
        pass

    def on_disconnected(self, reason: str) -> None:
        pass


def _wait(condition: object, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def two_brokers(tmp_path: Path, mosquitto_binary: str) -> Iterator[list[MosquittoBroker]]:
    brokers = [
        MosquittoBroker(data_dir=tmp_path / f"broker{i}", binary=mosquitto_binary) for i in (1, 2)
    ]
    for broker in brokers:
        broker.start()
    yield brokers
    for broker in brokers:
        broker.stop()


def _state_watcher(port: int) -> tuple[PahoBrokerClient, queue.Queue[tuple[bool, int]]]:
    states: queue.Queue[tuple[bool, int]] = queue.Queue()

    def on_message(topic: str, payload: bytes) -> None:
        state = decode_state(payload)
        states.put((state.online, state.timestamp))

    client = PahoBrokerClient(
        MqttEndpoint(port=port, client_id=f"watch-{port}"), on_message, _Quiet()
    )
    client.start()
    _wait(lambda: client.connected, what="watcher connected")
    assert client.subscribe([("spBv1.0/STATE/multi", 1)])
    return client, states


def test_h07_birth_on_every_broker_with_its_own_timestamp_and_data_from_either(
    tmp_path: Path, two_brokers: list[MosquittoBroker]
) -> None:
    first, second = two_brokers
    server = MesServer(
        ServerSettings(
            host_id="multi",
            database_url=f"sqlite:///{tmp_path / 'h.db'}",
            mqtt=MqttSettings(port=first.port),
            extra_brokers=[MqttSettings(port=second.port)],
        ),
        serve_http=False,
    )
    server.start()
    watchers: list[PahoBrokerClient] = []
    queues: list[queue.Queue[tuple[bool, int]]] = []
    stopped = False
    try:
        _wait(lambda: all(h.online for h in server.hosts), what="host online on both brokers")
        births = []
        for broker in two_brokers:
            client, states = _state_watcher(broker.port)
            watchers.append(client)
            queues.append(states)
            online, stamp = states.get(timeout=10)  # the retained birth
            assert online
            births.append(stamp)
        # Each broker got its own session timestamp.
        assert [h.session.session_timestamp for h in server.hosts] == births

        # An edge on the second broker only is ingested through that connection.
        produced: list[object] = []
        edge = EdgeAgent(
            EdgeSettings(
                group_id="G",
                edge_node_id="E2",
                primary_host_id="multi",
                poll_interval_s=0.1,
                mqtt=MqttSettings(port=second.port),
                spool=SpoolSettings(path=tmp_path / "e2.db"),
            ),
            record_to=produced.append,
        )
        edge.start()
        try:
            _wait(lambda: len(produced) > 60, what="values produced")
        finally:
            edge.stop()
        expected = len({(c.device_id, c.name, c.ts_ms) for c in produced})  # type: ignore[attr-defined]
        _wait(
            lambda: (
                server.ingest.drain(1)
                and server.historian.flush(1)
                and server.store.count() >= expected
            ),
            what="history complete",
        )
        assert server.store.count() == expected
        nodes = {(n.group_id, n.edge_node_id) for n in server.edges.nodes()}
        assert ("G", "E2") in nodes

        # Clean shutdown publishes offline, with the current time, on each broker.
        server.stop()
        stopped = True
        for states, birth in zip(queues, births, strict=True):
            online, stamp = states.get(timeout=10)
            assert not online
            assert stamp >= birth
    finally:
        for client in watchers:
            client.stop()
        if not stopped:
            server.stop()
