"""An in-process MQTT broker and ``BrokerClient`` for deterministic unit tests.

Semantics follow the real adapter (``andon.mqtt.paho_client``) as checked by
``tests/contract/test_broker_client_contract.py``:

* clean sessions: subscriptions vanish when a session ends; a persistent session
  (``clean_session=False``) keeps them, and QoS 1 messages published meanwhile wait for the
  client's return, like a broker's stored session;
* ``manual_ack``: the handler gets an ``ack``; a message not acknowledged when its persistent
  session ends is delivered again in the next one;
* ``will_factory`` is called before every (re)connect; the Will is published on ``crash()``
  (the in-memory ``_abort``) and never on ``stop()``/``disconnect()``;
* QoS 1 tickets are acknowledged at once while connected, failed while not connected;
* listener callbacks alternate connected/disconnected and may call ``subscribe()``.

Differences that make tests deterministic: everything happens synchronously in the calling
thread. ``start()`` connects before returning (if the broker is online), ``publish()`` delivers
to every matching subscriber before returning, ``set_online(True)`` reconnects every started
client before returning, and ``disconnect()`` reconnects immediately.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from andon.mqtt.interface import (
    AckingMessageHandler,
    BrokerClientStats,
    ConnectionListener,
    MessageHandler,
    MqttEndpoint,
    Will,
    WillFactory,
)

__all__ = ["InMemoryBroker", "InMemoryBrokerClient", "MemoryTicket", "topic_matches"]


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT 3.1.1 matching of ``+`` (one level) and ``#`` (the rest, including the parent)."""
    if topic.startswith("$") and not topic_filter.startswith("$"):
        return False  # wildcards at the first level never match $SYS-style topics
    f_parts = topic_filter.split("/")
    t_parts = topic.split("/")
    for i, part in enumerate(f_parts):
        if part == "#":
            return True
        if i >= len(t_parts):
            return False
        if part not in ("+", t_parts[i]):
            return False
    return len(f_parts) == len(t_parts)


def _valid_filter(topic_filter: str) -> bool:
    parts = topic_filter.split("/")
    for i, part in enumerate(parts):
        if "#" in part and (part != "#" or i != len(parts) - 1):
            return False
        if "+" in part and part != "+":
            return False
    return bool(topic_filter)


class MemoryTicket:
    """A ticket that is resolved when it is created (the in-memory broker acks at once)."""

    __slots__ = ("_ok",)

    def __init__(self, ok: bool) -> None:
        self._ok = ok

    def wait(self, timeout: float | None = None) -> bool:
        return self._ok

    @property
    def acknowledged(self) -> bool:
        return self._ok

    @property
    def done(self) -> bool:
        return True


@dataclass(slots=True)
class _Message:
    topic: str
    payload: bytes
    retain: bool


@dataclass(slots=True)
class _StoredSession:
    """A persistent session while its client is away: subscriptions and waiting messages."""

    filters: set[str] = field(default_factory=set)
    waiting: deque[tuple[str, bytes]] = field(default_factory=deque)


class InMemoryBroker:
    """Topic routing, retained messages and Wills for ``InMemoryBrokerClient`` instances."""

    def __init__(self) -> None:
        # RLock: a message handler may publish from inside a delivery.
        self._lock = threading.RLock()
        self._online = True
        self._sessions: dict[str, InMemoryBrokerClient] = {}  # client_id -> connected client
        self._clients: list[InMemoryBrokerClient] = []  # every started, not stopped client
        self._stored: dict[str, _StoredSession] = {}  # client_id -> persistent session away
        self.retained: dict[str, bytes] = {}
        self.published: list[tuple[str, bytes, int, bool]] = []  # log for assertions

    def client(
        self,
        client_id: str,
        on_message: MessageHandler,
        listener: ConnectionListener,
        will_factory: WillFactory | None = None,
        *,
        clean_session: bool = True,
        manual_ack: bool = False,
    ) -> InMemoryBrokerClient:
        return InMemoryBrokerClient(
            self, client_id, on_message, listener, will_factory, clean_session, manual_ack
        )

    def client_for(self, endpoint: MqttEndpoint, **kwargs: Any) -> InMemoryBrokerClient:
        """A ``BrokerClientFactory``: the client id and session options of ``endpoint``."""
        return self.client(
            endpoint.client_id,
            clean_session=endpoint.clean_session,
            manual_ack=endpoint.manual_ack,
            **kwargs,
        )

    def waiting(self, client_id: str) -> int:
        """QoS 1 messages waiting for the persistent session ``client_id`` to come back."""
        with self._lock:
            stored = self._stored.get(client_id)
            return 0 if stored is None else len(stored.waiting)

    @property
    def online(self) -> bool:
        return self._online

    def set_online(self, online: bool) -> None:
        """Fault injection: ``False`` drops every session (no Wills: the broker itself is gone)
        and refuses connections; ``True`` reconnects every started client."""
        with self._lock:
            self._online = online
            clients = list(self._clients)
        for client in clients:
            if online:
                client._connect()
            else:
                client._drop("broker unreachable")

    # -- used by the clients --------------------------------------------------------------

    def _route(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        with self._lock:
            self.published.append((topic, payload, qos, retain))
            if retain:
                if payload:
                    self.retained[topic] = payload
                else:
                    self.retained.pop(topic, None)  # empty retained payload clears (MQTT 3.3.1.3)
            targets = [
                c
                for c in self._sessions.values()
                if any(topic_matches(f, topic) for f in c._filters)
            ]
            if qos > 0:  # a persistent session away keeps QoS 1 messages for its return
                for stored in self._stored.values():
                    if any(topic_matches(f, topic) for f in stored.filters):
                        stored.waiting.append((topic, payload))
        # Deliver outside the lock so a handler that blocks cannot stall other publishers.
        # A normal publish is delivered with retain=False, as real brokers do.
        for client in targets:
            client._deliver(topic, payload)


class InMemoryBrokerClient:
    """A ``BrokerClient`` attached to an ``InMemoryBroker``."""

    def __init__(
        self,
        broker: InMemoryBroker,
        client_id: str,
        on_message: MessageHandler,
        listener: ConnectionListener,
        will_factory: WillFactory | None = None,
        clean_session: bool = True,
        manual_ack: bool = False,
    ) -> None:
        self._broker = broker
        self.client_id = client_id
        self._on_message: MessageHandler | AckingMessageHandler = on_message
        self.clean_session = clean_session
        self.manual_ack = manual_ack
        # Delivered, not yet acknowledged (manual_ack), in order; a token per delivery.
        self._unacked: dict[object, tuple[str, bytes]] = {}
        self._listener = listener
        self._will_factory = will_factory
        self._started = False
        self._connected = False
        self._will: Will | None = None
        self._filters: set[str] = set()
        self._connects = 0
        self._disconnects = 0
        self._published = 0
        self._failed = 0
        self._last_error: str | None = None
        # Serialises listener callbacks per client, like the paho adapter's dispatcher thread.
        self._listener_lock = threading.RLock()

    # -- BrokerClient ---------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            raise RuntimeError("InMemoryBrokerClient.start() called twice")
        self._started = True
        with self._broker._lock:
            self._broker._clients.append(self)
        self._connect()

    def stop(self, timeout: float = 5.0) -> None:
        with self._broker._lock:
            if self in self._broker._clients:
                self._broker._clients.remove(self)
        self._started = False
        self._drop("disconnect requested")

    def disconnect(self) -> None:
        self._drop("disconnect requested")
        if self._started:
            self._connect()

    def crash(self) -> None:
        """Die without DISCONNECT: the broker publishes the Will; no reconnect."""
        will = self._will if self._connected else None
        self.stop()
        if will is not None:
            self._broker._route(will.topic, will.payload, will.qos, will.retain)

    _abort = crash  # the name the paho adapter uses for the same fault

    @property
    def connected(self) -> bool:
        return self._connected

    def stats(self) -> BrokerClientStats:
        return BrokerClientStats(
            connected=self._connected,
            connects_total=self._connects,
            disconnects_total=self._disconnects,
            published_total=self._published,
            acked_total=self._published,
            publish_failed_total=self._failed,
            last_error=self._last_error,
        )

    def subscribe(self, filters: Sequence[tuple[str, int]], timeout: float = 10.0) -> bool:
        if not self._connected or not all(_valid_filter(f) for f, _ in filters):
            return False
        with self._broker._lock:
            self._filters.update(f for f, _ in filters)
            retained = [
                (topic, payload)
                for topic, payload in self._broker.retained.items()
                if any(topic_matches(f, topic) for f, _ in filters)
            ]
        for topic, payload in retained:  # retained messages go to each new subscription
            self._deliver(topic, payload)
        return True

    def publish(
        self, topic: str, payload: bytes, qos: int = 0, retain: bool = False
    ) -> MemoryTicket:
        if not self._connected:
            self._failed += 1
            return MemoryTicket(False)
        if "+" in topic or "#" in topic or not topic:
            raise ValueError(f"invalid publish topic {topic!r}")
        self._published += 1
        self._broker._route(topic, payload, qos, retain)
        return MemoryTicket(True)

    # -- internals --------------------------------------------------------------------------

    def _connect(self) -> None:
        with self._listener_lock:
            if self._connected or not self._started:
                return
            # Called before every attempt, like the paho adapter, even if the attempt fails.
            will = self._will_factory() if self._will_factory is not None else None
            with self._broker._lock:
                if not self._broker._online:
                    self._last_error = "broker unreachable"
                    return
                displaced = self._broker._sessions.get(self.client_id)
            if displaced is not None:
                # Client ID takeover; Mosquitto 2.0 publishes the displaced session's Will.
                displaced._drop("client id taken over", publish_will=True)
            with self._broker._lock:
                self._broker._sessions[self.client_id] = self
                self._will = will
                self._connected = True
                self._connects += 1
                self._last_error = None
                stored = self._broker._stored.pop(self.client_id, None)
                if stored is not None and not self.clean_session:
                    self._filters = set(stored.filters)
            self._listener.on_connected()
            if stored is not None and not self.clean_session:
                self._deliver_stored(stored)

    def _drop(self, reason: str, publish_will: bool = False) -> None:
        with self._listener_lock:
            if not self._connected:
                return
            with self._broker._lock:
                self._connected = False
                self._disconnects += 1
                if not self.clean_session:  # the broker keeps it; unacknowledged come again
                    stored = self._broker._stored.setdefault(self.client_id, _StoredSession())
                    stored.filters = set(self._filters)
                    stored.waiting.extendleft(reversed(list(self._unacked.values())))
                self._unacked.clear()
                self._filters.clear()
                if self._broker._sessions.get(self.client_id) is self:
                    del self._broker._sessions[self.client_id]
                will, self._will = self._will, None
            if publish_will and will is not None:
                self._broker._route(will.topic, will.payload, will.qos, will.retain)
            self._listener.on_disconnected(reason)

    def _deliver(self, topic: str, payload: bytes) -> None:
        if not self._connected:
            return
        if not self.manual_ack:
            cast(MessageHandler, self._on_message)(topic, payload)
            return
        token = object()
        with self._broker._lock:
            self._unacked[token] = (topic, payload)
        cast(AckingMessageHandler, self._on_message)(topic, payload, self._acker(token))

    def _acker(self, token: object) -> Callable[[], None]:
        def ack() -> None:
            with self._broker._lock:
                self._unacked.pop(token, None)  # gone with its session: a no-op

        return ack

    def _deliver_stored(self, stored: _StoredSession) -> None:
        """Messages that waited for this persistent session, in order; what the session could
        not take (it ended meanwhile) keeps waiting."""
        while stored.waiting:
            if not self._connected:
                with self._broker._lock:
                    again = self._broker._stored.setdefault(self.client_id, _StoredSession())
                    again.waiting.extend(stored.waiting)
                return
            self._deliver(*stored.waiting.popleft())
