"""Diagnostics of every edge node and device the host has seen (``GET /api/v1/edges``)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace

__all__ = ["PROBLEM_KINDS", "DeviceView", "EdgeNodeView", "EdgeRegistry"]

#: Problem kinds counted per edge node; the host session reports them.
PROBLEM_KINDS = (
    "malformed_payload",
    "bad_topic",
    "seq_gap",
    "unknown_alias",
    "unknown_metric",
    "before_birth",
    "rebirth_requested",
    "future_timestamp",
)


@dataclass(frozen=True, slots=True)
class DeviceView:
    device_id: str
    online: bool
    last_birth_ms: int | None
    last_death_ms: int | None
    metric_count: int


@dataclass(frozen=True, slots=True)
class EdgeNodeView:
    group_id: str
    edge_node_id: str
    online: bool
    bd_seq: int | None
    last_birth_ms: int | None
    last_death_ms: int | None
    last_seen_ms: int | None
    metric_count: int
    devices: tuple[DeviceView, ...]
    counters: dict[str, int]
    #: What the edge itself reports about its spool (node metrics ``Andon/Spool/*``).
    spool: dict[str, int | float | str | None] = field(default_factory=dict)


@dataclass(slots=True)
class _Node:
    group_id: str
    edge_node_id: str
    online: bool = False
    bd_seq: int | None = None
    last_birth_ms: int | None = None
    last_death_ms: int | None = None
    last_seen_ms: int | None = None
    metric_count: int = 0
    devices: dict[str, DeviceView] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PROBLEM_KINDS, 0))
    spool: dict[str, int | float | str | None] = field(default_factory=dict)


class EdgeRegistry:
    """Written by the ingest thread, read by API threads."""

    def __init__(self) -> None:
        self._nodes: dict[tuple[str, str], _Node] = {}
        self._lock = threading.Lock()
        #: Problems not attributable to an edge node (e.g. a topic that does not parse).
        self.unattributed: dict[str, int] = dict.fromkeys(PROBLEM_KINDS, 0)

    def _node(self, group_id: str, edge_node_id: str) -> _Node:
        key = (group_id, edge_node_id)
        node = self._nodes.get(key)
        if node is None:
            node = self._nodes[key] = _Node(group_id, edge_node_id)
        return node

    def seen(self, group_id: str, edge_node_id: str, at_ms: int) -> None:
        with self._lock:
            self._node(group_id, edge_node_id).last_seen_ms = at_ms

    def node_birth(
        self, group_id: str, edge_node_id: str, bd_seq: int | None, metric_count: int, at_ms: int
    ) -> None:
        with self._lock:
            node = self._node(group_id, edge_node_id)
            node.online = True
            node.bd_seq = bd_seq
            node.last_birth_ms = at_ms
            node.last_seen_ms = at_ms
            node.metric_count = metric_count

    def node_death(self, group_id: str, edge_node_id: str, at_ms: int) -> None:
        with self._lock:
            node = self._node(group_id, edge_node_id)
            node.online = False
            node.last_death_ms = at_ms
            for device_id, device in node.devices.items():
                node.devices[device_id] = replace(device, online=False, last_death_ms=at_ms)

    def device_birth(
        self, group_id: str, edge_node_id: str, device_id: str, metric_count: int, at_ms: int
    ) -> None:
        with self._lock:
            node = self._node(group_id, edge_node_id)
            previous = node.devices.get(device_id)
            node.devices[device_id] = DeviceView(
                device_id=device_id,
                online=True,
                last_birth_ms=at_ms,
                last_death_ms=previous.last_death_ms if previous else None,
                metric_count=metric_count,
            )

    def device_death(self, group_id: str, edge_node_id: str, device_id: str, at_ms: int) -> None:
        with self._lock:
            node = self._node(group_id, edge_node_id)
            previous = node.devices.get(device_id)
            node.devices[device_id] = DeviceView(
                device_id=device_id,
                online=False,
                last_birth_ms=previous.last_birth_ms if previous else None,
                last_death_ms=at_ms,
                metric_count=previous.metric_count if previous else 0,
            )

    def problem(self, kind: str, group_id: str | None, edge_node_id: str | None) -> None:
        with self._lock:
            counters = (
                self._node(group_id, edge_node_id).counters
                if group_id is not None and edge_node_id is not None
                else self.unattributed
            )
            counters[kind] = counters.get(kind, 0) + 1

    def spool_report(
        self, group_id: str, edge_node_id: str, values: dict[str, int | float | str | None]
    ) -> None:
        with self._lock:
            self._node(group_id, edge_node_id).spool.update(values)

    def nodes(self) -> list[EdgeNodeView]:
        with self._lock:
            return [
                EdgeNodeView(
                    group_id=n.group_id,
                    edge_node_id=n.edge_node_id,
                    online=n.online,
                    bd_seq=n.bd_seq,
                    last_birth_ms=n.last_birth_ms,
                    last_death_ms=n.last_death_ms,
                    last_seen_ms=n.last_seen_ms,
                    metric_count=n.metric_count,
                    devices=tuple(sorted(n.devices.values(), key=lambda d: d.device_id)),
                    counters=dict(n.counters),
                    spool=dict(n.spool),
                )
                for n in sorted(self._nodes.values(), key=lambda n: (n.group_id, n.edge_node_id))
            ]

    def totals(self) -> dict[str, int]:
        with self._lock:
            totals = dict(self.unattributed)
            for node in self._nodes.values():
                for kind, count in node.counters.items():
                    totals[kind] = totals.get(kind, 0) + count
            return totals
