"""PahoBrokerClient: only its network thread writes to the socket.

Paho's writer takes no lock. Without a loop thread of paho's own (we drive ``loop()`` from our
connection thread), ``publish()`` used to write from the caller's thread as well, concurrently
with the network thread, and packets left out of order: an edge's NBIRTH reached the host after
the DBIRTHs published behind it, the host took them for births before the node's and asked for
a rebirth, and the values in between were dropped. The contract test
``test_one_threads_publishes_keep_their_order_across_topics`` shows the order on the wire; this
one shows the cause deterministically.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from andon.mqtt.interface import MqttEndpoint
from andon.mqtt.paho_client import PahoBrokerClient
from andon.testing.brokers import MosquittoBroker

pytestmark = [pytest.mark.integration, pytest.mark.mosquitto]
TIMEOUT = 15.0


class _Listener:
    def __init__(self) -> None:
        self.events: queue.Queue[str] = queue.Queue()
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()

    def __call__(self, topic: str, payload: bytes) -> None:
        self.messages.put((topic, payload))

    def on_connected(self) -> None:
        self.events.put("connected")

    def on_disconnected(self, reason: str) -> None:
        self.events.put("disconnected")


@pytest.fixture
def broker(tmp_path: Path, mosquitto_binary: str) -> Iterator[MosquittoBroker]:
    b = MosquittoBroker(data_dir=tmp_path / "mosquitto", binary=mosquitto_binary)
    b.start()
    try:
        yield b
    finally:
        b.stop()


def test_publishes_from_other_threads_are_written_by_the_network_thread(
    broker: MosquittoBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    writers: set[str] = set()
    loop_write = paho.Client.loop_write

    def recording_loop_write(self: paho.Client) -> paho.MQTTErrorCode:
        writers.add(threading.current_thread().name)
        return loop_write(self)

    monkeypatch.setattr(paho.Client, "loop_write", recording_loop_write)
    listener = _Listener()
    client = PahoBrokerClient(
        MqttEndpoint(port=broker.port, client_id="writes"), on_message=listener, listener=listener
    )
    client.start()
    try:
        assert listener.events.get(timeout=TIMEOUT) == "connected"
        assert client.subscribe([("w/#", 1)])  # from this thread

        def publish_some() -> None:
            tickets = [client.publish(f"w/{i % 3}", b"x", qos=i % 2) for i in range(200)]
            assert all(t.wait(TIMEOUT) for t in tickets)

        publish_some()  # from this thread
        other = threading.Thread(target=publish_some, name="another-publisher")
        other.start()
        other.join(TIMEOUT)
        received = [listener.messages.get(timeout=TIMEOUT) for _ in range(400)]
    finally:
        client.stop()
    assert len(received) == 400
    assert writers == {"andon-mqtt-writes"}, f"threads that wrote to the socket: {writers}"
