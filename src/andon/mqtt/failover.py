"""A broker client that walks a list of brokers, connected to at most one at a time.

Sparkplug edge nodes with several MQTT servers must never be connected to two at once, and must
move to the next server when the primary host goes offline on the current one (SPARKPLUG.md §9).
This wraps one single-broker client at a time: after ``attempts_per_broker`` failed connection
attempts, or when asked with ``next_server()``, it stops the current client and starts one for
the next endpoint in the list (wrapping around).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from andon.mqtt.interface import (
    BrokerClient,
    BrokerClientStats,
    ConnectionListener,
    MessageHandler,
    MqttEndpoint,
    PublishTicket,
    Will,
    WillFactory,
)

__all__ = ["FailoverBrokerClient"]

log = logging.getLogger(__name__)

#: Builds a single-broker client: (endpoint, on_message=, listener=, will_factory=) -> client.
SingleBrokerFactory = Callable[..., BrokerClient]


class FailoverBrokerClient:
    def __init__(
        self,
        endpoints: Sequence[MqttEndpoint],
        on_message: MessageHandler,
        listener: ConnectionListener,
        will_factory: WillFactory | None = None,
        *,
        client_factory: SingleBrokerFactory,
        attempts_per_broker: int = 3,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one broker endpoint is needed")
        self._endpoints = list(endpoints)
        self._on_message = on_message
        self._listener = listener
        self._will_factory = will_factory
        self._client_factory = client_factory
        self._attempts_per_broker = attempts_per_broker
        self._lock = threading.Lock()
        self._index = 0
        self._attempts = 0
        self._switch = threading.Event()
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._current = self._build(0)

    @property
    def endpoint(self) -> MqttEndpoint:
        """The broker currently in use (or being tried)."""
        with self._lock:
            return self._endpoints[self._index]

    def _build(self, index: int) -> BrokerClient:
        return self._client_factory(
            self._endpoints[index],
            on_message=self._on_message,
            listener=_Relay(self),
            will_factory=self._next_will,
        )

    def _next_will(self) -> Will | None:
        with self._lock:
            self._attempts += 1
            exhausted = self._attempts > self._attempts_per_broker
        if exhausted and len(self._endpoints) > 1:
            self._switch.set()
        return self._will_factory() if self._will_factory is not None else None

    def _connected(self) -> None:
        with self._lock:
            self._attempts = 0
        self._listener.on_connected()

    # -- BrokerClient ------------------------------------------------------------------------
    def start(self) -> None:
        self._current.start()
        self._supervisor = threading.Thread(
            target=self._supervise, name="andon-mqtt-failover", daemon=True
        )
        self._supervisor.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._switch.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout)
            self._supervisor = None
        with self._lock:
            current = self._current
        current.stop(timeout)

    def next_server(self) -> None:
        """Leave the current broker and connect to the next one in the list."""
        self._switch.set()

    def subscribe(self, filters: Sequence[tuple[str, int]], timeout: float = 10.0) -> bool:
        with self._lock:
            current = self._current
        return current.subscribe(filters, timeout)

    def publish(
        self, topic: str, payload: bytes, qos: int = 0, retain: bool = False
    ) -> PublishTicket:
        with self._lock:
            current = self._current
        return current.publish(topic, payload, qos, retain)

    def disconnect(self) -> None:
        with self._lock:
            current = self._current
        current.disconnect()

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._current.connected

    def stats(self) -> BrokerClientStats:
        with self._lock:
            return self._current.stats()

    # -- switching happens here, never on a client's own thread ------------------------------
    def _supervise(self) -> None:
        pause_s = 0.0
        last_switch = -1e9
        while True:
            self._switch.wait()
            if self._stopping.is_set():
                return
            self._switch.clear()
            # Switching again soon after the last switch backs off (1 s doubling to 5 s), so that
            # a misbehaving peer cannot make us reconnect many times a second; kept short
            # because while we wait we cannot see the primary host come back.
            now = time.monotonic()
            pause_s = min(5.0, max(1.0, pause_s * 2)) if now - last_switch < 60.0 else 0.0
            if pause_s and self._stopping.wait(pause_s):
                return
            last_switch = time.monotonic()
            self._switch.clear()
            with self._lock:
                old = self._current
                self._index = (self._index + 1) % len(self._endpoints)
                self._attempts = 0
                endpoint = self._endpoints[self._index]
            old.stop()
            if self._stopping.is_set():
                return
            log.warning("switching to MQTT broker %s", endpoint.address)
            new = self._build(self._index)
            with self._lock:
                self._current = new
            new.start()


class _Relay:
    """Listener of the inner client: resets the attempt count on every successful connect."""

    def __init__(self, owner: FailoverBrokerClient) -> None:
        self._owner = owner

    def on_connected(self) -> None:
        self._owner._connected()

    def on_disconnected(self, reason: str) -> None:
        self._owner._listener.on_disconnected(reason)
