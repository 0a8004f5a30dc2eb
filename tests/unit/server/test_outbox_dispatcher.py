"""OutboxDispatcher on the in-memory broker: rows leave the outbox only after their PUBACK, in id
order; what was not acknowledged is sent again, also by a new dispatcher after a restart; a
closed gate publishes nothing; a record changed twice in a round is published once."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from andon.domain import OrderState, ProductionOrder
from andon.mqtt.interface import MqttEndpoint
from andon.server.outbox_dispatcher import OutboxDispatcher
from andon.storage.mes import MesRepository
from andon.storage.mes_runs import RunRepository
from andon.storage.migrate import upgrade_database
from andon.storage.outbox import OutboxRepository, enable_outbox
from andon.storage.schema import outbox_table
from andon.testing.memory_broker import InMemoryBroker, InMemoryBrokerClient
from andon.testing.processes import wait_until

TIMEOUT = 10.0
FEED = "andon/v1/outbox/Site1/+"


class _Listener:
    def on_connected(self) -> None:
        pass

    def on_disconnected(self, reason: str) -> None:
        pass


class _Feed:
    """A consumer of the outbox feed: every message, decoded, in arrival order."""

    def __init__(self, broker: InMemoryBroker) -> None:
        self.messages: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.client = broker.client("consumer", on_message=self._on, listener=_Listener())
        self.client.start()
        assert self.client.subscribe([(FEED, 1)])

    def _on(self, topic: str, payload: bytes) -> None:
        self.messages.put((topic, json.loads(payload)))

    def take(self, count: int) -> list[tuple[str, dict[str, Any]]]:
        return [self.messages.get(timeout=TIMEOUT) for _ in range(count)]


class _HeldTicket:
    """Acknowledged only once the test releases it (a PUBACK on its way)."""

    def __init__(self, inner: Any, released: threading.Event) -> None:
        self._inner, self._released = inner, released

    def wait(self, timeout: float | None = None) -> bool:
        return self._released.wait(timeout) and bool(self._inner.wait(timeout))

    @property
    def acknowledged(self) -> bool:
        return self._released.is_set() and bool(self._inner.acknowledged)

    @property
    def done(self) -> bool:
        return self._released.is_set()


class _HeldClient:
    """An in-memory client whose PUBACKs wait for ``release``."""

    def __init__(self, inner: InMemoryBrokerClient) -> None:
        self.inner = inner
        self.released = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> Any:
        return _HeldTicket(self.inner.publish(topic, payload, qos, retain), self.released)


@pytest.fixture
def mes(tmp_path: Path) -> Iterator[MesRepository]:
    url = f"sqlite:///{tmp_path / 'site.db'}"
    upgrade_database(url)
    repository = MesRepository(url)
    enable_outbox(repository.engine, "Site1")
    yield repository
    repository.close()


@pytest.fixture
def runs(mes: MesRepository) -> RunRepository:
    return RunRepository(mes.engine)


@pytest.fixture
def outbox(mes: MesRepository) -> OutboxRepository:
    return OutboxRepository(mes.engine)


def _dispatcher(outbox: OutboxRepository, broker: InMemoryBroker, **kw: Any) -> OutboxDispatcher:
    return OutboxDispatcher(
        outbox,
        MqttEndpoint(client_id="andon-outbox-site"),
        broker.client_for,
        **kw,
    )


def _orders(runs: RunRepository, *ids: str) -> None:
    for order_id in ids:
        runs.add_order(ProductionOrder(order_id, "item", 10))


def test_rows_are_deleted_only_after_their_puback(
    runs: RunRepository, outbox: OutboxRepository
) -> None:
    broker = InMemoryBroker()
    feed = _Feed(broker)
    held: list[_HeldClient] = []

    def factory(endpoint: MqttEndpoint, **kwargs: Any) -> Any:
        held.append(_HeldClient(broker.client_for(endpoint, **kwargs)))
        return held[0]

    dispatcher = OutboxDispatcher(outbox, MqttEndpoint(client_id="andon-outbox-site"), factory)
    dispatcher.client.start()
    _orders(runs, "PO1", "PO2", "PO3")
    done: queue.Queue[int] = queue.Queue()
    worker = threading.Thread(target=lambda: done.put(dispatcher.publish_round()))
    worker.start()
    try:
        got = feed.take(3)  # on the wire, in id order ...
        assert [m["record"]["id"] for _, m in got] == ["PO1", "PO2", "PO3"]
        assert [m["version"] for _, m in got] == sorted(m["version"] for _, m in got)
        assert {t for t, _ in got} == {"andon/v1/outbox/Site1/order"}
        assert outbox.stats().depth == 3  # ... but not acknowledged yet: still in the outbox
    finally:
        held[0].released.set()
        worker.join(TIMEOUT)
    assert done.get(timeout=TIMEOUT) == 3
    assert outbox.stats().depth == 0
    assert dispatcher.stats().deleted_total == 3
    dispatcher.client.stop()


def test_what_the_broker_did_not_take_is_sent_in_a_later_round(
    runs: RunRepository, outbox: OutboxRepository
) -> None:
    broker = InMemoryBroker()
    feed = _Feed(broker)
    dispatcher = _dispatcher(outbox, broker)
    dispatcher.client.start()
    _orders(runs, "PO1")
    broker.set_online(False)
    _orders(runs, "PO2")
    assert dispatcher.publish_round() == 0  # refused: nothing deleted
    assert dispatcher.repository.stats().depth == 2
    assert dispatcher.stats().unacknowledged_total == 2
    broker.set_online(True)
    assert feed.client.subscribe([(FEED, 1)])  # the consumer's clean session is new
    assert dispatcher.publish_round() == 2
    assert [m["record"]["id"] for _, m in feed.take(2)] == ["PO1", "PO2"]
    assert dispatcher.repository.stats().depth == 0
    dispatcher.client.stop()


def test_a_new_dispatcher_resumes_from_what_is_left(
    runs: RunRepository, outbox: OutboxRepository
) -> None:
    broker = InMemoryBroker()
    broker.set_online(False)  # the first dispatcher never reaches the broker
    first = _dispatcher(outbox, broker)
    first.start()
    _orders(runs, "PO1", "PO2")
    runs.set_order_state("PO1", OrderState.RELEASED)
    first.stop()
    assert first.repository.stats().depth == 2  # PO1's first row was superseded at once
    broker.set_online(True)
    feed = _Feed(broker)
    second = _dispatcher(outbox, broker)  # e.g. the server after a restart or kill -9
    second.start()
    try:
        got = feed.take(2)
        assert [(m["record"]["id"], m["record"]["state"]) for _, m in got] == [
            ("PO2", "planned"),
            ("PO1", "released"),
        ]
        wait_until(lambda: outbox.stats().depth == 0, TIMEOUT, "the outbox emptied")
    finally:
        second.stop()


def test_a_closed_gate_publishes_nothing(runs: RunRepository, outbox: OutboxRepository) -> None:
    broker = InMemoryBroker()
    feed = _Feed(broker)
    gate_open = threading.Event()
    checks = threading.Semaphore(0)

    def may_publish() -> bool:
        checks.release()
        return gate_open.is_set()

    dispatcher = _dispatcher(outbox, broker, may_publish=may_publish, idle_poll_s=0.01)
    _orders(runs, "PO1")
    assert dispatcher.publish_round() == 0  # also checked per message inside a round
    dispatcher.start()
    try:
        for _ in range(5):  # the loop asked the gate several times meanwhile
            assert checks.acquire(timeout=TIMEOUT)
        assert feed.messages.empty()
        assert dispatcher.repository.stats().depth == 1
        assert dispatcher.health()["publishing"] is False
        assert dispatcher.health()["ok"]  # a passive node is not degraded by its backlog
        gate_open.set()  # promoted
        ((_, message),) = feed.take(1)
        assert message["record"]["id"] == "PO1"
    finally:
        dispatcher.stop()


def test_a_record_changed_twice_in_a_round_is_published_once(
    runs: RunRepository, outbox: OutboxRepository
) -> None:
    broker = InMemoryBroker()
    feed = _Feed(broker)
    dispatcher = _dispatcher(outbox, broker)
    dispatcher.client.start()
    _orders(runs, "PO1")
    (old,) = outbox.pending(10)
    # A later row of the same record beside the first (on PostgreSQL the write path skips a
    # row the dispatcher holds locked instead of replacing it).
    with outbox.engine.begin() as connection:
        connection.execute(
            outbox_table.insert().values(
                site="Site1", kind="order", record_key=old.record_key, deleted=False,
                record_json=old.record_json, created_ms=old.created_ms + 1,
            )
        )  # fmt: skip
    rows = outbox.pending(10)
    assert [r.key for r in rows] == [old.key, old.key]
    assert dispatcher.publish_round() == 1
    ((_, message),) = feed.take(1)
    assert message["version"] == rows[-1].id
    assert feed.messages.empty()
    assert outbox.stats().depth == 0  # both rows went with the newest one's PUBACK
    health = dispatcher.health()
    assert (health["depth"], health["oldest_created_ms"], health["published_total"]) == (0, None, 1)
    dispatcher.client.stop()
