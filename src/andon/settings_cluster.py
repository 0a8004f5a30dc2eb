"""The ``[cluster]`` settings of the server: redundancy and domains of control.

Declared here, beside ``andon.settings`` (which uses them as ``ServerSettings.cluster``), to keep
that module short; ``docs/configuration.md`` documents them like every other setting.
"""

from __future__ import annotations

import dataclasses

from pydantic import BaseModel, ConfigDict, Field, model_validator

from andon.cluster.domains import normalize_asset_prefix, overlapping_prefixes
from andon.cluster.model import DEFAULT_FENCE_TIMEOUT_MS
from andon.cluster.plan import ClusterPlan, DomainPlan, LeaseTiming
from andon.edge.sources.config import FieldError

__all__ = ["CandidateSettings", "ClusterSettings", "DomainSettings"]


class CandidateSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    node: str = Field(min_length=1, description="Node ID (a node's cluster.node_id).")
    priority: int = Field(0, description="Lower is preferred.")


class DomainSettings(BaseModel):
    """One domain of control: ``[[cluster.domains]]``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Domain name, unique.")
    assets: list[str] = Field(
        default_factory=list, description="Asset path prefixes, e.g. Site1/Packaging."
    )
    edges: list[str] = Field(
        default_factory=list, description='Edge node patterns "group/node", e.g. Plant1/Pack*.'
    )
    host_id: str | None = Field(
        None,
        description="Primary host ID the edges of this domain wait for (default: host_id).",
    )
    candidates: list[CandidateSettings] = Field(
        min_length=1, description="Nodes that may lead the domain, with priorities."
    )

    @model_validator(mode="after")
    def _unique_candidates(self) -> DomainSettings:
        seen: set[str] = set()
        for index, candidate in enumerate(self.candidates):
            if candidate.node in seen:
                raise FieldError(
                    ["candidates", index, "node"], f"node {candidate.node!r} is listed twice"
                )
            seen.add(candidate.node)
        return self

    def ranked(self) -> tuple[str, ...]:
        """Candidates most preferred first (equal priorities: in the order written)."""
        order = sorted(enumerate(self.candidates), key=lambda item: (item[1].priority, item[0]))
        return tuple(candidate.node for _, candidate in order)


class ClusterSettings(BaseModel):
    """Leadership of domains of control through leases in an arbiter database."""

    model_config = ConfigDict(extra="forbid")

    node_id: str | None = Field(
        None,
        description=(
            "This node's ID in the cluster (default: host_id). Every node of a cluster reads "
            "the same configuration and sets only this (e.g. ANDON_CLUSTER__NODE_ID)."
        ),
    )
    nodes: list[str] = Field(
        default_factory=list,
        description=(
            "Every node ID of the cluster; when given, candidates and node_id must be among "
            "them (catches a misspelt node)."
        ),
    )
    arbiter_url: str | None = Field(
        None,
        description=(
            "Database holding the leases (default: database_url): sqlite:///file for nodes on "
            "one host, postgresql://... for several hosts. Its tables are created as needed. "
            "Fenced writes check the lease in the historian database, so keep the default "
            "there unless the historian is not shared."
        ),
    )
    lease_ttl_ms: int = Field(3000, gt=0, description="Lease length, by the arbiter's clock.")
    renew_interval_ms: int | None = Field(
        None, gt=0, description="How often the holder renews (default: lease_ttl_ms / 3)."
    )
    demote_margin_ms: int = Field(
        500,
        gt=0,
        description=(
            "The holder demotes on its own clock this long before its lease could expire "
            "unless renewed (covers clock rate differences and the time a write takes)."
        ),
    )
    watchdog_stall_ms: int = Field(
        2000,
        gt=0,
        description=(
            "The process is killed (SIGKILL) when its lease loop makes no progress for this "
            "long; must exceed demote_margin_ms."
        ),
    )
    fence_timeout_ms: int = Field(
        DEFAULT_FENCE_TIMEOUT_MS,
        gt=0,
        description=(
            "Statement, lock and idle-in-transaction timeout of a fenced write transaction: "
            "the longest a takeover waits for an in-flight write of the old leader, frozen or "
            "not (PostgreSQL); a write that takes longer fails and is retried."
        ),
    )
    api_urls: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Address of each node's API and web UI, by node ID (e.g. {mes-a = "
            '"http://mes-a:8080"}), named in the 409 answer a passive node gives to a write. '
            "Default: the address each node reports in its heartbeat (http_host:http_port)."
        ),
    )
    passive_spool_margin_ms: int = Field(
        15_000,
        gt=0,
        description=(
            "A passive node spools every sample it receives and drops those it received this "
            "long before the leader's committed watermark (the leader has them). Covers the "
            "clock difference between nodes and how far the leader's ingest may lag behind; a "
            "longer lag is covered by the edges' rolling buffer, re-sent after a failover."
        ),
    )
    promotion_rebirth_delay_ms: int = Field(
        3_000,
        ge=0,
        description=(
            "After a promotion, edge nodes of the domain that have not sent a new birth within "
            "this time (they do not wait for the domain's primary host ID) are asked to rebirth, "
            "so that they re-send their rolling buffer."
        ),
    )
    promotion_rebirths_per_s: float = Field(
        5.0,
        gt=0,
        description=(
            "Most rebirth requests per second a cluster node sends, whatever the reason (no "
            "request storm when a node takes over many edges)."
        ),
    )
    domains: list[DomainSettings] = Field(
        default_factory=list,
        description=(
            "Domains of control, one `[[cluster.domains]]` table each: name, assets (path "
            "prefixes), edges (group/node patterns), host_id, and `[[cluster.domains."
            "candidates]]` with node and priority (lower is preferred). None: one implicit "
            "domain `default` with everything, led by this server (see README, Redundancy)."
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> ClusterSettings:
        try:
            self.timing()
        except ValueError as exc:
            raise FieldError(["renew_interval_ms"], str(exc)) from exc
        if self.watchdog_stall_ms <= self.demote_margin_ms:
            raise FieldError(
                ["watchdog_stall_ms"],
                f"must exceed demote_margin_ms ({self.demote_margin_ms} ms)",
            )
        names: set[str] = set()
        known = set(self.nodes)
        for index, domain in enumerate(self.domains):
            if domain.name in names:
                raise FieldError(["domains", index, "name"], f"domain {domain.name!r} twice")
            names.add(domain.name)
            for c_index, candidate in enumerate(domain.candidates):
                if known and candidate.node not in known:
                    raise FieldError(
                        ["domains", index, "candidates", c_index, "node"],
                        f"unknown node {candidate.node!r} (cluster.nodes: {', '.join(self.nodes)})",
                    )
        for node in self.api_urls:
            if known and node not in known:
                raise FieldError(
                    ["api_urls", node],
                    f"unknown node {node!r} (cluster.nodes: {', '.join(self.nodes)})",
                )
        overlap = overlapping_prefixes((d.name, d.assets) for d in self.domains)
        if overlap is not None:
            first, first_prefix, second, second_prefix = overlap
            index = next(i for i, d in enumerate(self.domains) if d.name == second)
            raise FieldError(
                ["domains", index, "assets"],
                f"asset prefix {second_prefix or '(all)'!r} of domain {second!r} overlaps "
                f"{first_prefix or '(all)'!r} of domain {first!r}",
            )
        return self

    def timing(self) -> LeaseTiming:
        return LeaseTiming(
            ttl_ms=self.lease_ttl_ms,
            renew_interval_ms=self.renew_interval_ms or max(1, self.lease_ttl_ms // 3),
            demote_margin_ms=self.demote_margin_ms,
        )

    def plan(self, host_id: str, *, as_member: bool = True) -> ClusterPlan:
        """The cluster as the lease machinery sees it, for the server with ``host_id``.

        ``as_member``: this process is one of the nodes, so with ``nodes`` listed its node ID
        must be among them (ValueError otherwise). The CLI, run from anywhere, passes False.
        """
        node = self.node_id or host_id
        if as_member and self.nodes and node not in self.nodes:
            raise ValueError(
                f"cluster.node_id: this node {node!r} is not in cluster.nodes"
                f" ({', '.join(self.nodes)}); set cluster.node_id (ANDON_CLUSTER__NODE_ID)"
            )
        timing = self.timing()
        if not self.domains:
            plan = ClusterPlan.single_node(node, host_id=host_id, timing=timing)
        else:
            plan = ClusterPlan(
                node_id=node,
                domains=tuple(
                    DomainPlan(
                        name=d.name,
                        assets=tuple(normalize_asset_prefix(a) for a in d.assets),
                        edges=tuple(d.edges),
                        host_id=d.host_id or host_id,
                        candidates=d.ranked(),
                    )
                    for d in self.domains
                ),
                timing=timing,
            )
        return dataclasses.replace(
            plan, watchdog_stall_ms=self.watchdog_stall_ms, fence_timeout_ms=self.fence_timeout_ms
        )

    def arbiter(self, database_url: str) -> str:
        """The arbiter database's URL."""
        return self.arbiter_url or database_url
