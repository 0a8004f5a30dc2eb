"""Sparkplug B topic namespace (SPARKPLUG.md §1).

``spBv1.0/<group>/<TYPE>/<edge_node>[/<device>]`` for edge messages and ``spBv1.0/STATE/<host>``
for host application state. IDs must be non-empty UTF-8 without ``+``, ``/`` or ``#``.

Spaces are legal Sparkplug, but the NATS server's MQTT listener (Andon's embedded broker)
refuses topics containing spaces; :func:`id_warning` reports that so configuration can warn early.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from andon.sparkplug.errors import TopicError

__all__ = [
    "NAMESPACE",
    "MessageType",
    "SparkplugTopic",
    "TopicError",
    "device_topic",
    "id_warning",
    "node_topic",
    "parse_topic",
    "state_topic",
    "validate_id",
]

NAMESPACE = "spBv1.0"
_FORBIDDEN = frozenset("+/#")


class MessageType(Enum):
    NBIRTH = "NBIRTH"
    NDEATH = "NDEATH"
    DBIRTH = "DBIRTH"
    DDEATH = "DDEATH"
    NDATA = "NDATA"
    DDATA = "DDATA"
    NCMD = "NCMD"
    DCMD = "DCMD"
    STATE = "STATE"

    @property
    def is_device(self) -> bool:
        """True for the types whose topic carries a device id."""
        return self in _DEVICE_TYPES


_DEVICE_TYPES = frozenset(
    {MessageType.DBIRTH, MessageType.DDEATH, MessageType.DDATA, MessageType.DCMD}
)
_BY_NAME = {t.value: t for t in MessageType}


def validate_id(value: str, what: str = "id") -> str:
    """Return ``value`` if it is a legal group/edge node/device/host id; TopicError otherwise."""
    if not value:
        raise TopicError(f"{what} must not be empty")
    bad = _FORBIDDEN.intersection(value)
    if bad:
        raise TopicError(f"{what} {value!r} contains forbidden character(s) {''.join(sorted(bad))}")
    return value


def id_warning(value: str) -> str | None:
    """A warning for ids that are legal Sparkplug but break on some brokers, else None."""
    if any(ch.isspace() for ch in value):
        return (
            f"id {value!r} contains whitespace: legal in Sparkplug, but the NATS server's MQTT "
            "listener (the embedded broker) rejects topics with spaces"
        )
    return None


@dataclass(frozen=True, slots=True)
class SparkplugTopic:
    """A parsed topic. ``host_id`` is set for STATE only; ``device_id`` for device types only."""

    message_type: MessageType
    group_id: str | None = None
    edge_node_id: str | None = None
    device_id: str | None = None
    host_id: str | None = None
    namespace: str = NAMESPACE

    def format(self) -> str:
        if self.message_type is MessageType.STATE:
            return f"{self.namespace}/STATE/{self.host_id}"
        base = f"{self.namespace}/{self.group_id}/{self.message_type.value}/{self.edge_node_id}"
        return base if self.device_id is None else f"{base}/{self.device_id}"

    def __str__(self) -> str:
        return self.format()


def parse_topic(topic: str) -> SparkplugTopic:
    """Parse and validate a Sparkplug B topic; TopicError for anything else."""
    parts = topic.split("/")
    if parts[0] != NAMESPACE:
        raise TopicError(f"topic {topic!r} is not in the {NAMESPACE} namespace")
    if len(parts) == 3 and parts[1] == "STATE":
        return SparkplugTopic(MessageType.STATE, host_id=validate_id(parts[2], "host id"))
    if len(parts) not in (4, 5):
        raise TopicError(f"topic {topic!r} has {len(parts)} levels; expected 4 or 5")
    message_type = _BY_NAME.get(parts[2])
    if message_type is None or message_type is MessageType.STATE:
        raise TopicError(f"topic {topic!r}: unknown message type {parts[2]!r}")
    has_device = len(parts) == 5
    if has_device != message_type.is_device:
        need = "needs" if message_type.is_device else "must not have"
        raise TopicError(f"topic {topic!r}: {message_type.value} {need} a device id")
    for value in parts[1:]:  # empty levels can only appear here: '+', '#' are checked too
        validate_id(value, "topic level")
    return SparkplugTopic(
        message_type,
        group_id=parts[1],
        edge_node_id=parts[3],
        device_id=parts[4] if has_device else None,
    )


def node_topic(group_id: str, message_type: MessageType, edge_node_id: str) -> str:
    if message_type.is_device or message_type is MessageType.STATE:
        raise TopicError(f"{message_type.value} is not an edge-node message type")
    validate_id(group_id, "group id")
    validate_id(edge_node_id, "edge node id")
    return f"{NAMESPACE}/{group_id}/{message_type.value}/{edge_node_id}"


def device_topic(
    group_id: str, message_type: MessageType, edge_node_id: str, device_id: str
) -> str:
    if not message_type.is_device:
        raise TopicError(f"{message_type.value} is not a device message type")
    validate_id(group_id, "group id")
    validate_id(edge_node_id, "edge node id")
    validate_id(device_id, "device id")
    return f"{NAMESPACE}/{group_id}/{message_type.value}/{edge_node_id}/{device_id}"


def state_topic(host_id: str) -> str:
    return f"{NAMESPACE}/STATE/{validate_id(host_id, 'host id')}"
