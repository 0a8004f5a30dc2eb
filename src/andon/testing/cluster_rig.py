"""A redundant Andon cluster as child processes, for integration tests and ``andon bench failover``.

:class:`ClusterRig` runs N ``andon server`` nodes reading one shared configuration (each sets only
its node ID and HTTP port, through the environment, as a deployment would) and M ``andon edge``
agents with the built-in simulator recording every value it produces. The broker and the
database belong to the caller. A node's database URL may be overridden (a node reaching the
database through a ``TcpProxy``). Roles are read from each node's open ``/api/v1/health``
(the ``cluster`` component), leases from the arbiter tables directly.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from andon.cluster.model import Lease
from andon.storage.cluster_arbiter import SqlArbiter
from andon.storage.store import HistorianStore, open_historian_store
from andon.testing.http_auth import forget_token, login, register_token, token_for_url
from andon.testing.ports import free_port
from andon.testing.processes import (
    RIG_ADMIN_PASSWORD,
    AndonProcess,
    HistoryComparison,
    RecordedValue,
    compare_with_history,
    count_recorded_lines,
    http_get,
    read_recorded_values,
    wait_until,
    write_toml,
)

__all__ = ["ClusterRig", "EdgeSpec", "NodeProcess", "domain_table"]

#: The host ID of the default single domain's primary host (the edges wait for it).
HOST_ID = "andon-cluster"


@dataclass(frozen=True, slots=True)
class EdgeSpec:
    """One ``andon edge``: its IDs, whether it waits for a primary host (and which), simulator."""

    edge_node_id: str = "Edge1"
    group_id: str = "Plant1"
    primary_host_id: str | None = HOST_ID
    simulator: Mapping[str, object] = field(default_factory=dict)
    poll_interval_s: float = 0.2


def domain_table(
    name: str,
    candidates: Sequence[str],
    *,
    assets: Sequence[str] = ("",),
    edges: Sequence[str] = ("*",),
    host_id: str = HOST_ID,
) -> dict[str, object]:
    """A ``[[cluster.domains]]`` entry; candidates most preferred first."""
    return {
        "name": name,
        "assets": list(assets),
        "edges": list(edges),
        "host_id": host_id,
        "candidates": [{"node": n, "priority": i + 1} for i, n in enumerate(candidates)],
    }


def _toml_inline(value: object) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {_toml_inline(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_inline(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


class NodeProcess:
    """One ``andon server`` node: its process, HTTP port and working directory."""

    def __init__(self, rig: ClusterRig, name: str, database_url: str | None) -> None:
        self.name = name
        self.http_port = free_port()
        self.workdir = rig.workdir / f"node-{name}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = dict(rig.base_env)
        env["ANDON_CLUSTER__NODE_ID"] = name
        env["ANDON_HTTP_PORT"] = str(self.http_port)
        if database_url is not None:
            env["ANDON_DATABASE_URL"] = database_url
        self.process = AndonProcess(
            ["server", "--config", str(rig.config_path)],
            self.workdir / "server.log",
            name=f"node {name}",
            cwd=self.workdir,
            env=env,
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def post(self, path: str, body: Mapping[str, object]) -> tuple[int, str]:
        """``(status, body)`` of a JSON POST with the node's registered admin token."""
        request = urllib.request.Request(
            f"{self.base_url}{path}",
            data=json.dumps(body).encode("utf-8"),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        token = token_for_url(self.base_url)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10.0) as response:
                return int(response.status), response.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", errors="replace")

    def health(self) -> dict[str, Any] | None:
        status, body = http_get(f"{self.base_url}/api/v1/health", timeout=2.0, token="")
        if status not in (200, 503):
            return None
        try:
            document: dict[str, Any] = json.loads(body)
        except ValueError:
            return None
        return document

    def cluster_health(self) -> dict[str, Any] | None:
        health = self.health()
        component = None if health is None else health["components"].get("cluster")
        return component if isinstance(component, dict) else None

    def role(self, domain: str) -> str | None:
        """passive / promoting / active, None when the node does not answer."""
        component = self.cluster_health()
        return None if component is None else component["roles"].get(domain)

    def role_since_ms(self, domain: str) -> int | None:
        component = self.cluster_health()
        if component is None:
            return None
        since = component["domains"][domain]["since_ms"]
        return since if isinstance(since, int) else None


class ClusterRig:
    def __init__(
        self,
        workdir: Path,
        *,
        mqtt_port: int,
        database_url: str,
        nodes: Sequence[str],
        domains: Sequence[Mapping[str, object]] | None = None,
        edges: Sequence[EdgeSpec] = (EdgeSpec(),),
        lease_ttl_ms: int | None = 1500,
        renew_interval_ms: int | None = 500,
        demote_margin_ms: int | None = 300,
        node_database_urls: Mapping[str, str] | None = None,
        server_extra: Mapping[str, object] | None = None,
        cluster_extra: Mapping[str, object] | None = None,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url
        self.mqtt_port = mqtt_port
        self.domains = list(domains or [domain_table("plant", nodes)])
        cluster: dict[str, object] = {
            "nodes": list(nodes),
            "lease_ttl_ms": lease_ttl_ms,
            "renew_interval_ms": renew_interval_ms,
            "demote_margin_ms": demote_margin_ms,
            **(cluster_extra or {}),
        }
        lines = [
            f"host_id = {json.dumps(HOST_ID)}",
            f"database_url = {json.dumps(database_url)}",
            f"initial_admin_password = {json.dumps(RIG_ADMIN_PASSWORD)}",
            *(f"{k} = {_toml_inline(v)}" for k, v in (server_extra or {}).items()),
            "[mqtt]",
            f"port = {mqtt_port}",
            "[cluster]",
            *(f"{k} = {_toml_inline(v)}" for k, v in cluster.items() if v is not None),
        ]
        for domain in self.domains:
            lines.append("[[cluster.domains]]")
            lines.extend(f"{k} = {_toml_inline(v)}" for k, v in domain.items())
        self.config_path = workdir / "cluster.toml"
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.base_env = {k: v for k, v in os.environ.items() if not k.startswith("ANDON_")}
        urls = node_database_urls or {}
        self.nodes = {name: NodeProcess(self, name, urls.get(name)) for name in nodes}
        self.edge_specs = {spec.edge_node_id: spec for spec in edges}
        self.edges = {spec.edge_node_id: self._edge_process(spec) for spec in edges}
        self._store: HistorianStore | None = None
        self._arbiter: SqlArbiter | None = None

    def _edge_process(self, spec: EdgeSpec) -> AndonProcess:
        workdir = self.workdir / f"edge-{spec.edge_node_id}"
        config = write_toml(
            workdir / "edge.toml",
            {
                "group_id": spec.group_id,
                "edge_node_id": spec.edge_node_id,
                "primary_host_id": spec.primary_host_id,
                "poll_interval_s": spec.poll_interval_s,
                "mqtt": {"port": self.mqtt_port},
                "spool": {"path": workdir / "edge-spool.db"},
                "simulator": {**spec.simulator, "record_path": workdir / "record.jsonl"},
            },
        )
        return AndonProcess(
            ["edge", "--config", str(config)],
            workdir / "edge.log",
            name=f"edge {spec.edge_node_id}",
            cwd=workdir,
            env=self.base_env,
        )

    # -- nodes -----------------------------------------------------------------------------------

    def node(self, name: str) -> NodeProcess:
        return self.nodes[name]

    def start_nodes(self, names: Iterable[str] | None = None, timeout: float = 60.0) -> None:
        """Start the nodes together; wait until each answers its health probe."""
        chosen = [self.nodes[n] for n in (names if names is not None else self.nodes)]
        for node in chosen:
            node.process.start()
        for node in chosen:
            wait_until(
                lambda node=node: node.cluster_health() is not None,  # type: ignore[misc]
                timeout,
                f"node {node.name} never answered /api/v1/health",
                processes=[node.process],
            )
            register_token(node.base_url, login(node.base_url, "admin", RIG_ADMIN_PASSWORD))

    def kill(self, name: str) -> None:
        self.nodes[name].process.kill()

    def stop_node(self, name: str, timeout: float = 30.0) -> int | None:
        return self.nodes[name].process.stop(timeout)

    def pause(self, name: str) -> None:
        self.nodes[name].process.send_signal(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self.nodes[name].process.send_signal(signal.SIGCONT)

    def roles(self, domain: str = "plant") -> dict[str, str | None]:
        return {name: n.role(domain) for name, n in self.nodes.items() if n.process.running}

    def active(self, domain: str = "plant") -> list[str]:
        return sorted(name for name, role in self.roles(domain).items() if role == "active")

    def wait_active(self, domain: str = "plant", timeout: float = 30.0) -> str:
        """The one node active for ``domain`` (fails if two are)."""

        def one() -> str | None:
            active = self.active(domain)
            assert len(active) <= 1, f"two nodes active for {domain}: {active}"
            return active[0] if active else None

        found = wait_until(
            one, timeout, f"no node became active for {domain}", processes=self.running()
        )
        assert found is not None
        return found

    def running(self) -> list[AndonProcess]:
        return [p for p in self.processes() if p.running]

    def processes(self) -> list[AndonProcess]:
        return [n.process for n in self.nodes.values()] + list(self.edges.values())

    # -- edges and the record ----------------------------------------------------------------

    def start_edges(self, names: Iterable[str] | None = None) -> None:
        for name in names if names is not None else self.edges:
            self.edges[name].start()

    def stop_edges(self, timeout: float = 30.0) -> list[int | None]:
        return [edge.stop(timeout) for edge in self.edges.values()]

    def record_path(self, edge: str) -> Path:
        return self.workdir / f"edge-{edge}" / "record.jsonl"

    def recorded_count(self) -> int:
        return sum(count_recorded_lines(self.record_path(name)) for name in self.edges)

    def recorded(self) -> list[RecordedValue]:
        values: list[RecordedValue] = []
        for name, spec in self.edge_specs.items():
            values += read_recorded_values(self.record_path(name), spec.group_id, name)
        return values

    def wait_recorded(self, count: int, timeout: float) -> int:
        return wait_until(
            lambda: (n := self.recorded_count()) >= count and n,
            timeout,
            lambda: f"the edges produced {self.recorded_count()} of {count} values",
            processes=self.running(),
        )

    @property
    def store(self) -> HistorianStore:
        if self._store is None:
            self._store = open_historian_store(self.database_url)
        return self._store

    @property
    def arbiter(self) -> SqlArbiter:
        if self._arbiter is None:
            self._arbiter = SqlArbiter(self.database_url, timeout_ms=5_000)
        return self._arbiter

    def lease(self, domain: str = "plant") -> Lease | None:
        return next((x for x in self.arbiter.leases() if x.domain == domain), None)

    def wait_for_history(self, timeout: float) -> HistoryComparison:
        """Once the edges are stopped: wait until every recorded value is stored, compare."""
        recorded = self.recorded()
        keys = len({(r.tag, r.ts_ms) for r in recorded})
        wait_until(
            lambda: self.store.count() >= keys,
            timeout,
            lambda: f"the history holds {self.store.count()} of {keys} recorded values",
            processes=[p for p in self.running() if p not in self.edges.values()],
        )
        return compare_with_history(self.store, recorded)

    def describe(self) -> str:
        return "\n".join(p.describe(60) for p in self.processes() if p.started)

    def close(self) -> None:
        for edge in self.edges.values():
            edge.stop(10.0)
        for node in self.nodes.values():
            node.process.send_signal(signal.SIGCONT)  # a paused node cannot stop
            node.process.stop(15.0)
            forget_token(node.base_url)
        if self._store is not None:
            self._store.close()
        if self._arbiter is not None:
            self._arbiter.close()

    def __enter__(self) -> ClusterRig:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
