"""Actions and views returned by :class:`andon.sparkplug.host.HostApplicationSession`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from andon.sparkplug.actions import Disconnect, Problem, Publish
from andon.sparkplug.model import DataType, MetricValue, Quality
from andon.sparkplug.topic import MessageType

__all__ = [
    "CommandTarget",
    "DeviceOffline",
    "DeviceOnline",
    "EdgeNodeStats",
    "HostAction",
    "MetricsReceived",
    "MetricsStale",
    "NodeOffline",
    "NodeOnline",
    "ReceivedMetric",
]


class ReceivedMetric(NamedTuple):
    """One metric value, resolved against its birth (name and datatype always known).

    ``timestamp_ms`` is the metric's own timestamp, else the payload's, else the receive time.
    ``is_historical`` values must not overwrite the live value (policy is the adapter's:
    ``HostApplicationSession.historical_updates_live``); ``is_transient`` ones are not historized.
    A named tuple: one is built per received value, and a tuple is cheap to create.
    """

    name: str
    datatype: DataType
    value: MetricValue
    timestamp_ms: int
    is_historical: bool
    is_transient: bool
    quality: Quality


@dataclass(frozen=True, slots=True)
class MetricsReceived:
    """Values from an NBIRTH/DBIRTH/NDATA/DDATA (``device_id`` None for node metrics)."""

    group_id: str
    edge_node_id: str
    device_id: str | None
    message_type: MessageType
    metrics: tuple[ReceivedMetric, ...]
    receive_ms: int


@dataclass(frozen=True, slots=True)
class NodeOnline:
    """An NBIRTH was accepted: the node is online with ``metric_count`` birth metrics."""

    group_id: str
    edge_node_id: str
    at_ms: int
    bd_seq: int
    metric_count: int


@dataclass(frozen=True, slots=True)
class NodeOffline:
    group_id: str
    edge_node_id: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class DeviceOnline:
    """A DBIRTH was accepted: the device is online with ``metric_count`` birth metrics."""

    group_id: str
    edge_node_id: str
    device_id: str
    at_ms: int
    metric_count: int


@dataclass(frozen=True, slots=True)
class DeviceOffline:
    group_id: str
    edge_node_id: str
    device_id: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class MetricsStale:
    """Mark these metrics' quality STALE from ``at_ms`` on (after a death or rebirth request)."""

    group_id: str
    edge_node_id: str
    device_id: str | None
    names: tuple[str, ...]
    at_ms: int


HostAction = (
    MetricsReceived
    | NodeOnline
    | NodeOffline
    | DeviceOnline
    | DeviceOffline
    | MetricsStale
    | Publish
    | Disconnect
    | Problem
)


@dataclass(frozen=True, slots=True)
class CommandTarget:
    """What the births say about a metric a command would write (see ``command_target``)."""

    datatype: DataType
    #: The birth marked it read-only (``readOnly`` property true).
    read_only: bool
    #: Its edge node is born and online (no NDEATH since its NBIRTH).
    node_online: bool
    #: Its device is online (no DDEATH since its DBIRTH); True for a node metric.
    device_online: bool


@dataclass(frozen=True, slots=True)
class EdgeNodeStats:
    """Per edge node counters and state, for diagnostics (DESIGN.md A14)."""

    group_id: str
    edge_node_id: str
    online: bool
    devices: tuple[str, ...]
    malformed: int
    seq_gaps: int
    rebirth_requests: int
    unknown_alias: int
    before_birth: int
    last_birth_ms: int | None
    last_seen_ms: int | None
