"""Actions the Sparkplug session state machines return for the caller (the MQTT adapter) to do.

The sessions never do IO: they return these small frozen values and the adapter carries them
out in order. Actions specific to one side live beside that session (``edge_node``, ``host``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Disconnect", "Problem", "Publish", "Subscribe", "WillMessage"]


@dataclass(frozen=True, slots=True)
class WillMessage:
    """The Will to register in the next CONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


@dataclass(frozen=True, slots=True)
class Publish:
    """Publish ``payload`` on ``topic``."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Subscribe to ``filters`` ((topic filter, qos), ...) and wait for the SUBACK."""

    filters: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Close the MQTT session; ``next_server``: reconnect to the next broker in the list."""

    reason: str
    next_server: bool = False


@dataclass(frozen=True, slots=True)
class Problem:
    """Bad input that was handled (counted and logged by the caller), never raised.

    ``kind`` is a short stable identifier (e.g. ``malformed_payload``, ``seq_gap``) suitable as
    a metric label; ``detail`` is a human-readable explanation.
    """

    kind: str
    group_id: str | None
    edge_node_id: str | None
    detail: str
