"""Cluster nodes in this process for the unit tests: ``MesServer`` nodes of one cluster on the
in-memory broker and one SQLite file (historian and arbiter), short lease timings, and a
Sparkplug edge node the test drives."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from andon.mqtt.interface import MqttEndpoint
from andon.server.mes_server import MesServer
from andon.settings import ServerSettings
from andon.sparkplug.edge_node import EdgeNodeSession
from andon.sparkplug.model import DataType, Metric
from andon.testing.memory_broker import InMemoryBroker, InMemoryBrokerClient
from andon.testing.processes import wait_until

__all__ = ["HOST_ID", "PASSWORD", "TAG", "Edge", "Rig"]

HOST_ID = "plant-host"
TAG = "Plant/Edge1/Press1/Speed"
PASSWORD = "cluster-test-password-1"


def _cluster(node: str, **extra: Any) -> dict[str, Any]:
    return {
        "node_id": node,
        "nodes": ["a", "b"],
        "lease_ttl_ms": 1500,
        "renew_interval_ms": 300,
        "demote_margin_ms": 300,
        "watchdog_stall_ms": 60_000,  # in-process: never SIGKILL the test runner
        "promotion_rebirth_delay_ms": 200,
        "domains": [
            {
                "name": "plant",
                "assets": [""],
                "edges": ["*"],
                "candidates": [{"node": "a", "priority": 1}, {"node": "b", "priority": 2}],
            }
        ],
        **extra,
    }


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.broker = InMemoryBroker()
        self.database_url = f"sqlite:///{tmp_path / 'andon.db'}"
        self.nodes: dict[str, MesServer] = {}

    def factory(self, endpoint: MqttEndpoint, **kwargs: Any) -> InMemoryBrokerClient:
        return self.broker.client(endpoint.client_id, **kwargs)

    def start(
        self,
        node: str,
        plant_file: Path | None = None,
        outbox: dict[str, Any] | None = None,
        **cluster: Any,
    ) -> MesServer:
        settings = ServerSettings(
            host_id=HOST_ID,
            database_url=self.database_url,
            historian_spool_path=self.tmp_path / "spool.db",
            initial_admin_password=PASSWORD,
            plant_file=plant_file,
            cluster=_cluster(node, **cluster),
            **({} if outbox is None else {"outbox": outbox}),
        )
        server = MesServer(settings, client_factory=self.factory, serve_http=False)
        server.start()
        self.nodes[node] = server
        return server

    def stop(self, node: str) -> None:
        self.nodes.pop(node).stop()

    def role(self, node: str, domain: str = "plant") -> str:
        return self.nodes[node].health()["cluster"]["roles"][domain]  # type: ignore[no-any-return]

    def wait_role(self, node: str, role: str, timeout: float = 30.0, domain: str = "plant") -> None:
        # 30 s: a three-node cold start once needed more than 10 s in a full CI run on a slow
        # machine (a wait, not a timing assertion; it takes about a second alone).
        wait_until(
            lambda: self.role(node, domain) == role, timeout, f"node {node} never {role} ({domain})"
        )

    def stored(self, tag: str = TAG) -> list[int]:
        store = next(iter(self.nodes.values())).store
        return [s.ts_ms for s in store.history(tag, 0, 2**62, limit=100_000)]

    def close(self) -> None:
        for node in list(self.nodes):
            self.stop(node)


class Edge:
    """A Sparkplug edge node the test drives (no primary host: it never waits)."""

    def __init__(
        self, broker: InMemoryBroker, device: str = "Press1", edge_node_id: str = "Edge1"
    ) -> None:
        self.device = device
        self.tag = f"Plant/{edge_node_id}/{device}/Speed"  # what send() publishes
        self.session = EdgeNodeSession("Plant", edge_node_id, bd_seq=None)
        self.client = broker.client(
            edge_node_id.lower(), on_message=lambda t, p: None, listener=self
        )
        now = time.time_ns() // 1_000_000
        self.session.next_will(now)
        self.client.start()
        self.session.on_connected(now)
        self.ts = now - 100_000
        self.sent: list[int] = []

    def birth(self, metrics: list[Metric] | None = None) -> None:
        born = metrics or [Metric("Speed", 0.0, DataType.DOUBLE)]
        for publish in self.session.births([], {self.device: born}, self.ts):
            self.client.publish(publish.topic, publish.payload, qos=1)

    def publish(self, metrics: list[Metric], ts_ms: int) -> None:
        publish = self.session.data(self.device, metrics, ts_ms)
        self.client.publish(publish.topic, publish.payload, qos=1)

    def send(self, count: int) -> None:
        for _ in range(count):
            self.ts += 1
            metric = Metric("Speed", float(self.ts % 1000), timestamp=self.ts)
            publish = self.session.data(self.device, [metric], self.ts)
            self.client.publish(publish.topic, publish.payload, qos=1)
            self.sent.append(self.ts)

    def on_connected(self) -> None:
        pass

    def on_disconnected(self, reason: str) -> None:
        pass
