"""Which domain of control a sample, an asset, a tag or a command topic belongs to, on a node.

``DomainMap`` (``andon.cluster.domains``) answers None for an edge node no pattern matches and
an asset no prefix covers. A node must still put such data somewhere, or nobody would write it:
it belongs to the *first* configured domain (README, Redundancy), and each such edge node is
logged once. Answers are cached per edge node and per asset (a handful of each per plant).
"""

from __future__ import annotations

import logging
import threading

from andon.cluster.domains import DomainMap
from andon.cluster.plan import DomainPlan
from andon.sparkplug.topic import NAMESPACE

__all__ = ["DomainRouter"]

log = logging.getLogger(__name__)

_COMMANDS = frozenset({"NCMD", "DCMD"})


class DomainRouter:
    """Thread-safe; every answer is a configured domain name."""

    def __init__(self, domains: tuple[DomainPlan, ...]) -> None:
        if not domains:
            raise ValueError("a domain router needs at least one domain")
        self._map = DomainMap(domains)
        self._first = domains[0].name
        self._edges: dict[tuple[str, str], str] = {}
        self._assets: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def names(self) -> tuple[str, ...]:
        return self._map.names

    def host_id_of(self, domain: str) -> str:
        return self._map.host_id_of(domain)

    def domain_of_edge(self, group_id: str, edge_node_id: str) -> str:
        key = (group_id, edge_node_id)
        found = self._edges.get(key)
        if found is not None:
            return found
        domain = self._map.domain_of_edge(group_id, edge_node_id)
        if domain is None:
            domain = self._first
            log.warning(
                "edge node %s/%s matches no domain's edges; it belongs to the first domain, %s",
                group_id,
                edge_node_id,
                domain,
            )
        with self._lock:
            self._edges[key] = domain
        return domain

    def domain_of_tag(self, tag: str) -> str:
        """A tag path is ``group/edge node/[device/]metric``: its edge node decides."""
        parts = tag.split("/", 2)
        if len(parts) < 3:
            return self._first
        return self.domain_of_edge(parts[0], parts[1])

    def domain_of_asset(self, path: str) -> str:
        found = self._assets.get(path)
        if found is not None:
            return found
        domain = self._map.domain_of_asset(path) or self._first
        with self._lock:
            self._assets[path] = domain
        return domain

    def domain_of_command(self, topic: str) -> str | None:
        """The domain of the edge node an NCMD/DCMD topic addresses; None for other topics."""
        parts = topic.split("/")
        if len(parts) < 4 or parts[0] != NAMESPACE or parts[2] not in _COMMANDS:
            return None
        return self.domain_of_edge(parts[1], parts[3])
