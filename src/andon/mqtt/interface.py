"""The broker-client interface every adapter implements (paho, in-memory)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "AckingMessageHandler",
    "BrokerClient",
    "BrokerClientStats",
    "ConnectionListener",
    "MessageHandler",
    "MqttEndpoint",
    "PublishTicket",
    "TlsSettings",
    "Will",
    "WillFactory",
]


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


#: Called before every CONNECT attempt; returns the Will to register (or None for no Will).
WillFactory = Callable[[], Will | None]


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """TLS for the broker connection. ``insecure`` skips host-name checks (test rigs only)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    """Where and how to connect. Lives here (not in the paho adapter) so configuration code can
    build it without importing the MQTT library.

    ``password`` is excluded from ``repr`` so it never reaches a log line.
    """

    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = ""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: TlsSettings | None = None
    keepalive_s: int = 10
    #: QoS 1 messages on the wire without PUBACK; more are queued by the client library.
    max_inflight: int = 500
    #: Bound on messages queued behind the in-flight window; beyond it a publish fails (ticket
    #: False) instead of growing memory without limit.
    max_queued: int = 20_000
    connect_timeout_s: float = 10.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    #: False: a persistent session -- the broker keeps the subscriptions and queues QoS 1
    #: messages while the client is away (needs a stable ``client_id``).
    clean_session: bool = True
    #: True: the message handler is an ``AckingMessageHandler``; a QoS 1 message is
    #: acknowledged only when it calls ``ack``.
    manual_ack: bool = False

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class BrokerClientStats:
    """A snapshot of one client's counters (for the system page and metrics)."""

    connected: bool
    connects_total: int
    disconnects_total: int
    published_total: int
    acked_total: int
    publish_failed_total: int
    last_error: str | None


#: Called for every received message: (topic, payload). Runs on the client's network thread;
#: it must be quick or hand over to a bounded queue (blocking here applies back-pressure).
MessageHandler = Callable[[str, bytes], None]

#: The handler of a client with ``MqttEndpoint.manual_ack``: (topic, payload, ack). The PUBACK of
#: a QoS 1 message is sent only when ``ack()`` is called (from any thread; acknowledge in the
#: order received), e.g. once the message is committed. A message not acknowledged before its
#: session ends is delivered again in the next one (with ``clean_session=False``); ``ack()``
#: after that is a no-op.
AckingMessageHandler = Callable[[str, bytes, Callable[[], None]], None]


class ConnectionListener(Protocol):
    """Session events. Every adapter calls these on a thread that is *not* the network thread,
    one at a time and strictly alternating (connected, disconnected, connected, ...), so a
    listener may block, e.g. in ``subscribe()`` waiting for the SUBACK.
    """

    def on_connected(self) -> None:
        """The session is up (CONNACK accepted). Subscriptions must be (re)made here."""

    def on_disconnected(self, reason: str) -> None:
        """The session is gone (network error, broker close, or our own disconnect).

        Every ticket still waiting for its PUBACK has already been failed when this runs.
        """


class PublishTicket(Protocol):
    """Tracks one publish until the broker acknowledged it (PUBACK for QoS 1)."""

    def wait(self, timeout: float | None = None) -> bool:
        """True once acknowledged; False on timeout or when the session ended first."""

    @property
    def acknowledged(self) -> bool: ...

    @property
    def done(self) -> bool:
        """True once the outcome is known: acknowledged, or failed (refused, session ended)."""


class BrokerClient(Protocol):
    """One MQTT session to one broker, reconnecting with backoff until ``stop``.

    ``will_factory`` is called before *every* connection attempt: Sparkplug needs a new Will
    per CONNECT (bdSeq, STATE timestamp).
    """

    def start(self) -> None: ...

    def stop(self, timeout: float = 5.0) -> None:
        """Disconnect (no Will is sent) and stop reconnecting."""

    def subscribe(self, filters: Sequence[tuple[str, int]], timeout: float = 10.0) -> bool:
        """Subscribe and wait for the SUBACK.

        False if not connected, if the SUBACK did not arrive in time or the session ended first,
        or if the broker refused any filter (granted QoS 0x80). Must not be called from the
        message handler (network thread): it would wait for a SUBACK that thread has to read.
        """

    def publish(
        self, topic: str, payload: bytes, qos: int = 0, retain: bool = False
    ) -> PublishTicket:
        """Send one message. Never queues across sessions: when not connected the ticket is
        already failed, and a session that ends before the PUBACK fails the ticket, so the
        caller re-sends from its own spool. QoS 0 tickets succeed once handed to the socket.
        """

    def disconnect(self) -> None:
        """Close the current session cleanly; reconnects later unless stopped."""

    @property
    def connected(self) -> bool: ...

    def stats(self) -> BrokerClientStats: ...
