"""Watches the leaders of an in-process cluster (``_cluster_rig``) on a thread, so a test can
assert what held at every step, not only where it ended: never two leaders of a domain at once,
and each domain's epoch only growing.

Roles are read from each node's ``ClusterNode.health()`` (in memory, safe after the node has
stopped) and every change is kept with the node's own timestamp of it (``since_ms``). A node
leads from its promotion (it may write from then on) until its demotion; all nodes share this
process's wall clock, so the lead periods of different nodes compare directly.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass

from andon.server.cluster_node import ClusterNode

__all__ = ["LeadPeriod", "LeaderWatch"]

_LEADING = frozenset({"promoting", "active"})
_POLL_S = 0.005  # sampling pace of the watch thread (the test itself waits on conditions)


@dataclass(frozen=True, slots=True)
class LeadPeriod:
    domain: str
    node: str
    epoch: int
    start_ms: int
    end_ms: int | None  # None: still leading


class LeaderWatch:
    def __init__(self) -> None:
        self._clusters: dict[str, ClusterNode] = {}
        self._last: dict[tuple[str, str], tuple[str, int | None, int | None]] = {}
        #: (domain, node) -> role changes: (role, since_ms, epoch)
        self._changes: dict[tuple[str, str], list[tuple[str, int | None, int | None]]] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leader-watch", daemon=True)

    def add(self, node: str, cluster: ClusterNode | None) -> None:
        assert cluster is not None, f"node {node} is not clustered"
        with self._lock:
            self._clusters[node] = cluster

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(5)
        self._sample()

    def _run(self) -> None:
        while not self._stopped.wait(_POLL_S):
            self._sample()

    def _sample(self) -> None:
        with self._lock:
            for node, cluster in self._clusters.items():
                for domain, state in cluster.health()["domains"].items():
                    seen = (state["role"], state["since_ms"], state["epoch"])
                    if self._last.get((domain, node)) != seen:
                        self._last[(domain, node)] = seen
                        self._changes.setdefault((domain, node), []).append(seen)

    def periods(self, domain: str) -> list[LeadPeriod]:
        """Every lead period of ``domain`` seen so far, by start."""
        self._sample()
        found: list[LeadPeriod] = []
        with self._lock:
            for (name, node), changes in self._changes.items():
                if name != domain:
                    continue
                current: tuple[int, int] | None = None  # (epoch, start_ms)
                for role, since_ms, epoch in changes:
                    assert since_ms is not None
                    if role in _LEADING:
                        assert epoch is not None
                        if current is not None and current[0] != epoch:
                            found.append(LeadPeriod(domain, node, current[0], current[1], since_ms))
                            current = None
                        if current is None:
                            current = (epoch, since_ms)
                    elif current is not None:
                        found.append(LeadPeriod(domain, node, current[0], current[1], since_ms))
                        current = None
                if current is not None:
                    found.append(LeadPeriod(domain, node, current[0], current[1], None))
        return sorted(found, key=lambda p: (p.start_ms, p.epoch))

    def check(self, domain: str) -> list[tuple[str, int]]:
        """Assert one leader at a time and a growing epoch; the (node, epoch) leaders in order."""
        periods = self.periods(domain)
        for before, after in itertools.pairwise(periods):
            assert before.end_ms is not None, f"two leaders of {domain}: {before} and {after}"
            assert before.end_ms <= after.start_ms, f"two leaders of {domain}: {before}, {after}"
            assert before.epoch < after.epoch, f"the epoch of {domain} went back: {periods}"
        return [(p.node, p.epoch) for p in periods]
