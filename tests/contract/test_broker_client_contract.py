"""One contract for every ``BrokerClient``: in-memory, paho + Mosquitto, paho + embedded NATS.

Real brokers run as child processes on free ports with configs the tests write. Nothing sleeps:
every wait is a queue or event with a timeout.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from andon.mqtt.interface import BrokerClient, MqttEndpoint, Will
from andon.testing.memory_broker import InMemoryBroker
from andon.testing.ports import free_port

TIMEOUT = 15.0


class Recorder:
    """MessageHandler + ConnectionListener that records into queues."""

    def __init__(self) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.events: queue.Queue[str] = queue.Queue()
        self.on_connect_hook: Callable[[], None] | None = None

    def __call__(self, topic: str, payload: bytes) -> None:
        self.messages.put((topic, payload))

    def on_connected(self) -> None:
        if self.on_connect_hook is not None:
            self.on_connect_hook()
        self.events.put("connected")

    def on_disconnected(self, reason: str) -> None:
        self.events.put("disconnected")

    def expect_event(self, kind: str) -> None:
        assert self.events.get(timeout=TIMEOUT) == kind

    def next_message(self) -> tuple[str, bytes]:
        return self.messages.get(timeout=TIMEOUT)


class AckRecorder(Recorder):
    """An ``AckingMessageHandler`` + listener: records (topic, payload, ack)."""

    def __init__(self) -> None:
        super().__init__()
        self.deliveries: queue.Queue[tuple[str, bytes, Callable[[], None]]] = queue.Queue()

    def __call__(self, topic: str, payload: bytes, ack: Callable[[], None] = lambda: None) -> None:
        self.deliveries.put((topic, payload, ack))

    def next_delivery(self) -> tuple[str, bytes, Callable[[], None]]:
        return self.deliveries.get(timeout=TIMEOUT)


class Backend:
    """Builds clients for one broker implementation and injects broker faults."""

    name = ""
    redelivery_s = 0.0

    def client(
        self, client_id: str, rec: Recorder, will_factory: Callable[[], Will | None] | None = None
    ) -> Any:
        raise NotImplementedError

    def unreachable_client(self, client_id: str, rec: Recorder) -> Any:
        raise NotImplementedError

    def durable_client(self, client_id: str, rec: AckRecorder) -> Any:
        """A persistent session (``clean_session=False``) with manual acknowledgement."""
        raise NotImplementedError

    def outage(self) -> None:
        raise NotImplementedError

    def recover(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class MemoryBackend(Backend):
    name = "memory"

    def __init__(self) -> None:
        self.broker = InMemoryBroker()

    def client(self, client_id: str, rec: Recorder, will_factory: Any = None) -> Any:
        return self.broker.client(client_id, rec, rec, will_factory)

    def unreachable_client(self, client_id: str, rec: Recorder) -> Any:
        down = InMemoryBroker()
        down.set_online(False)
        return down.client(client_id, rec, rec)

    def durable_client(self, client_id: str, rec: AckRecorder) -> Any:
        endpoint = MqttEndpoint(client_id=client_id, clean_session=False, manual_ack=True)
        return self.broker.client_for(endpoint, on_message=rec, listener=rec)

    def outage(self) -> None:
        self.broker.set_online(False)

    def recover(self) -> None:
        self.broker.set_online(True)


class ProcessBackend(Backend):
    def __init__(self, broker: Any) -> None:
        self.broker = broker
        self.broker.start()
        # NATS redelivers an unacknowledged message to a resumed session after its ack_wait
        # only; Mosquitto at once on reconnect (MQTT 3.1.1 4.4).
        self.redelivery_s = float(getattr(broker, "ack_wait_s", 0.0))

    def _endpoint(self, client_id: str, port: int) -> MqttEndpoint:
        # Short backoff so reconnect tests finish quickly; production defaults are 0.5 s..30 s.
        return MqttEndpoint(
            port=port, client_id=client_id, backoff_initial_s=0.05, backoff_max_s=0.5
        )

    def client(self, client_id: str, rec: Recorder, will_factory: Any = None) -> Any:
        from andon.mqtt.paho_client import PahoBrokerClient

        return PahoBrokerClient(self._endpoint(client_id, self.broker.port), rec, rec, will_factory)

    def unreachable_client(self, client_id: str, rec: Recorder) -> Any:
        from andon.mqtt.paho_client import PahoBrokerClient

        return PahoBrokerClient(self._endpoint(client_id, free_port()), rec, rec)

    def durable_client(self, client_id: str, rec: AckRecorder) -> Any:
        from dataclasses import replace

        from andon.mqtt.paho_client import PahoBrokerClient

        endpoint = self._endpoint(client_id, self.broker.port)
        return PahoBrokerClient(replace(endpoint, clean_session=False, manual_ack=True), rec, rec)

    def outage(self) -> None:
        self.broker.kill()

    def recover(self) -> None:
        self.broker.start()

    def close(self) -> None:
        self.broker.stop()


@pytest.fixture(
    params=[
        "memory",
        pytest.param("mosquitto", marks=pytest.mark.integration),
        pytest.param("nats", marks=pytest.mark.integration),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    b: Backend
    if request.param == "memory":
        b = MemoryBackend()
    elif request.param == "mosquitto":
        mosquitto = request.getfixturevalue("mosquitto_binary")
        from andon.testing.brokers import MosquittoBroker

        b = ProcessBackend(MosquittoBroker(data_dir=tmp_path / "mosquitto", binary=mosquitto))
    else:
        from andon.mqtt.embedded_broker import EmbeddedNatsBroker

        # A shorter ack_wait than the shipped 60 s, so that redelivery is seen within the test.
        b = ProcessBackend(EmbeddedNatsBroker(tmp_path / "nats", free_port(), ack_wait_s=15))
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def connect(backend: Backend) -> Iterator[Callable[..., tuple[Any, Recorder]]]:
    """Start a client and wait for on_connected; every client is stopped after the test."""
    started: list[BrokerClient] = []
    ids = itertools.count()

    def make(
        will_factory: Callable[[], Will | None] | None = None,
        client_id: str | None = None,
        rec: Recorder | None = None,
        start: bool = True,
    ) -> tuple[Any, Recorder]:
        rec = rec or Recorder()
        client = backend.client(client_id or f"c{next(ids)}", rec, will_factory)
        started.append(client)
        if start:
            client.start()
            rec.expect_event("connected")
        return client, rec

    yield make
    for client in started:
        client.stop()


def test_connects_and_reports_stats(connect: Any) -> None:
    client, _ = connect()
    assert client.connected
    stats = client.stats()
    assert stats.connected
    assert stats.connects_total == 1
    assert stats.last_error is None


def test_subscribe_wildcards_and_receive(connect: Any) -> None:
    sub, rec = connect()
    pub, _ = connect()
    assert sub.subscribe([("a/+/c", 1), ("x/#", 1)])
    for topic in ("a/b/d", "a/b/c/d", "a/z/c"):  # only the last one matches a/+/c
        assert pub.publish(topic, topic.encode(), qos=1).wait(TIMEOUT)
    assert rec.next_message() == ("a/z/c", b"a/z/c")
    assert pub.publish("x", b"parent", qos=1).wait(TIMEOUT)  # '#' includes the parent level
    assert rec.next_message() == ("x", b"parent")
    assert pub.publish("x/y/z", b"deep", qos=1).wait(TIMEOUT)
    assert rec.next_message() == ("x/y/z", b"deep")
    assert rec.messages.empty()


def test_qos1_publish_is_acknowledged(connect: Any) -> None:
    client, _ = connect()
    tickets = [client.publish("t/ack", bytes([i]), qos=1) for i in range(50)]
    assert all(t.wait(TIMEOUT) for t in tickets)
    assert all(t.acknowledged for t in tickets)
    assert client.stats().acked_total >= 50


def test_publish_while_disconnected_fails_fast(backend: Backend) -> None:
    rec = Recorder()
    client = backend.unreachable_client("nobody-home", rec)
    client.start()
    try:
        ticket = client.publish("t/x", b"lost", qos=1)
        assert ticket.wait(TIMEOUT) is False
        assert not ticket.acknowledged
        assert client.stats().publish_failed_total == 1
        assert not client.subscribe([("t/#", 1)])
    finally:
        client.stop()
    assert rec.events.empty()  # never connected, so never told so


def test_retained_message_reaches_later_subscriber(connect: Any) -> None:
    pub, _ = connect()
    assert pub.publish("spBv1.0/STATE/host", b'{"online":true}', qos=1, retain=True).wait(TIMEOUT)
    sub, rec = connect()
    assert sub.subscribe([("spBv1.0/STATE/+", 1)])
    assert rec.next_message() == ("spBv1.0/STATE/host", b'{"online":true}')


def test_subscribe_from_on_connected_does_not_deadlock(connect: Any) -> None:
    rec = Recorder()
    results: queue.Queue[bool] = queue.Queue()
    holder: list[Any] = []
    rec.on_connect_hook = lambda: results.put(holder[0].subscribe([("hook/#", 1)]))
    client, _ = connect(rec=rec, client_id="hooked", start=False)
    holder.append(client)
    client.start()
    assert results.get(timeout=TIMEOUT) is True
    rec.expect_event("connected")
    pub, _ = connect()
    assert pub.publish("hook/1", b"x", qos=1).wait(TIMEOUT)
    assert rec.next_message() == ("hook/1", b"x")


def test_will_delivered_on_abrupt_death(connect: Any) -> None:
    watcher, rec = connect()
    assert watcher.subscribe([("spBv1.0/G/NDEATH/+", 1)])
    node, _ = connect(lambda: Will("spBv1.0/G/NDEATH/E1", b"dead", qos=1))
    node._abort()
    assert rec.next_message() == ("spBv1.0/G/NDEATH/E1", b"dead")


def test_will_not_delivered_on_clean_stop(connect: Any) -> None:
    watcher, rec = connect()
    assert watcher.subscribe([("t/#", 1)])
    node, _ = connect(lambda: Will("t/will", b"dead", qos=1))
    node.stop()
    assert not node.connected
    # The broker handles the DISCONNECT before this later publish; a Will would come first.
    assert watcher.publish("t/sentinel", b"after", qos=1).wait(TIMEOUT)
    assert rec.next_message() == ("t/sentinel", b"after")
    assert rec.messages.empty()


def test_fresh_will_for_every_connect(connect: Any) -> None:
    watcher, rec = connect()
    assert watcher.subscribe([("t/will", 1)])
    calls = itertools.count(1)

    def will_factory() -> Will:
        return Will("t/will", f"will-{next(calls)}".encode(), qos=1)

    node, node_rec = connect(will_factory)
    node.disconnect()  # clean: will-1 is discarded
    node_rec.expect_event("disconnected")
    node_rec.expect_event("connected")  # reconnected with will-2
    node._abort()
    assert rec.next_message() == ("t/will", b"will-2")
    assert rec.messages.empty()


def test_reconnects_after_broker_outage(backend: Backend, connect: Any) -> None:
    client, rec = connect()
    backend.outage()
    rec.expect_event("disconnected")
    assert not client.connected
    assert client.publish("t/x", b"x", qos=1).wait(TIMEOUT) is False
    backend.recover()
    rec.expect_event("connected")
    assert client.subscribe([("t/#", 1)])  # clean session: subscriptions are re-made
    assert client.publish("t/back", b"ok", qos=1).wait(TIMEOUT)
    assert rec.next_message() == ("t/back", b"ok")
    stats = client.stats()
    assert stats.connects_total == 2
    assert stats.disconnects_total == 1


def test_sparkplug_topic_with_dot_round_trips(connect: Any) -> None:
    sub, rec = connect()
    pub, _ = connect()
    assert sub.subscribe([("spBv1.0/G/NBIRTH/E", 1), ("spBv1.0/G/+/E/D.1", 1)])
    assert pub.publish("spBv1.0/G/NBIRTH/E", b"\x08\x01", qos=1).wait(TIMEOUT)
    assert rec.next_message() == ("spBv1.0/G/NBIRTH/E", b"\x08\x01")
    assert pub.publish("spBv1.0/G/DDATA/E/D.1", b"\x08\x02", qos=0).wait(TIMEOUT)
    assert rec.next_message() == ("spBv1.0/G/DDATA/E/D.1", b"\x08\x02")


@pytest.mark.parametrize("qos", [0, 1])
def test_one_threads_publishes_keep_their_order_across_topics(connect: Any, qos: int) -> None:
    """Sparkplug relies on it: a node's NBIRTH reaches the host before its DBIRTHs, each on a
    topic of its own. MQTT promises order only per topic and QoS; the brokers Andon ships with
    keep one client's order across topics at one QoS, and so must our clients. The publisher is
    busy receiving meanwhile (its network thread reading and acknowledging a stream of
    messages) and publishes from a thread of its own, as the edge's publisher does. Paho, driven
    by our own loop, used to write from the publishing thread too, without a lock: packets then
    left in another order than they were published."""
    count = 2000
    sub, rec = connect()
    pub, _ = connect()
    noise, _ = connect()
    assert sub.subscribe([("order/#", 1)])
    assert pub.subscribe([("noise/#", 1)])
    stop = threading.Event()

    def keep_publisher_receiving() -> None:
        while not stop.is_set():
            batch = [noise.publish("noise/n", b"n" * 100, qos=1) for _ in range(50)]
            if not all(t.wait(TIMEOUT) for t in batch):
                return

    tickets: list[Any] = []

    def publish_in_order() -> None:
        for i in range(count):
            tickets.append(pub.publish(f"order/{i % 9}", str(i).encode(), qos=qos))

    background = threading.Thread(target=keep_publisher_receiving, daemon=True)
    background.start()
    publisher = threading.Thread(target=publish_in_order)
    try:
        publisher.start()
        publisher.join(TIMEOUT)
        assert not publisher.is_alive()
        assert len(tickets) == count
        assert all(t.wait(TIMEOUT) for t in tickets), "a publish was refused"
        got = [int(rec.next_message()[1]) for _ in range(count)]
    finally:
        stop.set()
        background.join(TIMEOUT)
    out_of_order = [(i, n) for i, n in enumerate(got) if n != i]
    assert not out_of_order, f"first out of order (position, payload): {out_of_order[:5]}"


def test_slow_qos1_subscriber_loses_nothing(backend: Backend, connect: Any) -> None:
    """Mosquitto's default max_queued_messages (1000) would drop here; NATS pauses delivery at
    max_ack_pending. The subscriber's handler blocks (so it sends no PUBACK) while 3000 messages
    pile up on the broker."""
    count = 3000
    gate = threading.Event()
    if isinstance(backend, MemoryBackend):
        gate.set()  # in-memory delivery is synchronous: a blocked handler would block publish
    received: queue.Queue[bytes] = queue.Queue()

    def slow_handler(topic: str, payload: bytes) -> None:
        gate.wait(TIMEOUT)
        received.put(payload)

    rec = Recorder()
    sub = backend.client("slow", rec)
    sub._on_message = slow_handler
    sub.start()
    try:
        rec.expect_event("connected")
        assert sub.subscribe([("bulk/#", 1)])
        pub, _ = connect()
        tickets = [pub.publish("bulk/x", str(i).encode(), qos=1) for i in range(count)]
        assert all(t.wait(TIMEOUT) for t in tickets)
        gate.set()
        got = [received.get(timeout=TIMEOUT) for _ in range(count)]
        assert sorted(got, key=int) == [str(i).encode() for i in range(count)]
    finally:
        gate.set()
        sub.stop()


def _start_durable(backend: Backend, client_id: str) -> tuple[Any, AckRecorder]:
    rec = AckRecorder()
    client = backend.durable_client(client_id, rec)
    client.start()
    rec.expect_event("connected")
    assert client.subscribe([("durable/#", 1)])
    return client, rec


def test_persistent_session_keeps_messages_published_while_away(
    backend: Backend, connect: Any
) -> None:
    sub, rec = _start_durable(backend, "durable-consumer")
    pub, _ = connect()
    assert pub.publish("durable/a", b"0", qos=1).wait(TIMEOUT)
    topic, payload, ack = rec.next_delivery()
    assert (topic, payload) == ("durable/a", b"0")
    ack()
    sub.stop()
    for i in range(1, 4):  # nobody is subscribed now: the broker keeps them for the session
        assert pub.publish("durable/a", str(i).encode(), qos=1).wait(TIMEOUT)
    back, rec2 = _start_durable(backend, "durable-consumer")
    try:
        got = []
        for _ in range(3):
            _, payload, ack = rec2.next_delivery()
            got.append(payload)
            ack()
        assert got == [b"1", b"2", b"3"]  # the acknowledged "0" does not come again
    finally:
        back.stop()


def test_unacknowledged_message_is_delivered_again_in_the_next_session(
    backend: Backend, connect: Any
) -> None:
    sub, rec = _start_durable(backend, "durable-crash")
    pub, _ = connect()
    assert pub.publish("durable/x", b"first", qos=1).wait(TIMEOUT)
    _, payload, _never_acked = rec.next_delivery()
    assert payload == b"first"
    sub.stop()  # e.g. the consumer died before it stored the message
    again, rec2 = _start_durable(backend, "durable-crash")
    try:
        _, payload, ack = rec2.deliveries.get(timeout=TIMEOUT + backend.redelivery_s)
        assert payload == b"first"
        ack()
        _never_acked()  # the old session's ack is a no-op now
        assert pub.publish("durable/x", b"second", qos=1).wait(TIMEOUT)
        _, payload, ack = rec2.next_delivery()
        assert payload == b"second"
        ack()
    finally:
        again.stop()
    third, rec3 = _start_durable(backend, "durable-crash")
    try:
        assert pub.publish("durable/x", b"third", qos=1).wait(TIMEOUT)
        _, payload, ack = rec3.next_delivery()
        assert payload == b"third"  # both earlier ones were acknowledged: not again
        ack()
    finally:
        third.stop()
