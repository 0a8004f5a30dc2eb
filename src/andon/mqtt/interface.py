"""The broker-client interface every adapter implements (paho, in-memory)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "BrokerClient",
    "ConnectionListener",
    "MessageHandler",
    "PublishTicket",
    "Will",
]


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


#: Called for every received message: (topic, payload). Runs on the client's network thread;
#: it must be quick or hand over to a bounded queue (blocking here applies back-pressure).
MessageHandler = Callable[[str, bytes], None]


class ConnectionListener(Protocol):
    def on_connected(self) -> None:
        """The session is up (CONNACK accepted). Subscriptions must be (re)made here."""

    def on_disconnected(self, reason: str) -> None:
        """The session is gone (network error, broker close, or our own disconnect)."""


class PublishTicket(Protocol):
    """Tracks one publish until the broker acknowledged it (PUBACK for QoS 1)."""

    def wait(self, timeout: float | None = None) -> bool:
        """True once acknowledged; False on timeout or when the session ended first."""

    @property
    def acknowledged(self) -> bool: ...


class BrokerClient(Protocol):
    """One MQTT session to one broker, reconnecting with backoff until ``stop``.

    ``will_factory`` is called before *every* connection attempt: Sparkplug needs a new Will
    per CONNECT (bdSeq, STATE timestamp).
    """

    def start(self) -> None: ...

    def stop(self, timeout: float = 5.0) -> None:
        """Disconnect (no Will is sent) and stop reconnecting."""

    def subscribe(self, filters: Sequence[tuple[str, int]], timeout: float = 10.0) -> bool:
        """Subscribe and wait for the SUBACK. False if it did not arrive in time."""

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> PublishTicket:
        ...

    def disconnect(self) -> None:
        """Close the current session cleanly; reconnects later unless stopped."""

    @property
    def connected(self) -> bool: ...
