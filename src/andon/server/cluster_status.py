"""What a cluster node knows about the others, and how it says it: the arbiter's leases and
member heartbeats as last read (``ClusterView``), the ``GET /api/v1/cluster`` document, and the
message of the 409 a node gives to a write it may not make.

Heartbeat info (``ClusterNode.heartbeat_info``) carries, besides what the lease runner adds:
``api_url`` (where the node's API answers), ``states`` (domain -> passive/promoting/active) and
``watermarks`` (domain -> UTC ms: every sample this node received before it is committed; see
``andon.server.cluster_upkeep``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from andon.cluster.model import Lease, Member

__all__ = ["ClusterView", "DomainReport", "leader_watermark", "refusal_message", "status_document"]


@dataclass(frozen=True, slots=True)
class ClusterView:
    """The arbiter's state as read at ``now_ms`` (arbiter clock); ``error`` if unreadable."""

    now_ms: int = 0
    leases: Mapping[str, Lease] = field(default_factory=dict)
    members: Mapping[str, Member] = field(default_factory=dict)
    read_at_ms: int | None = None  # this node's wall clock at the read; None: never read
    error: str | None = None

    def holder(self, domain: str) -> str | None:
        lease = self.leases.get(domain)
        return None if lease is None else lease.holder_at(self.now_ms)

    def api_url(self, node: str, configured: Mapping[str, str]) -> str | None:
        if node in configured:
            return configured[node]
        member = self.members.get(node)
        url = None if member is None else member.info.get("api_url")
        return url if isinstance(url, str) else None


@dataclass(frozen=True, slots=True)
class DomainReport:
    """This node's side of one domain, for the status document."""

    domain: str
    host_id: str
    candidates: tuple[str, ...]
    role: str
    since_ms: int | None
    epoch: int | None
    primary_online: bool
    spool_samples: int | None  # None: this node never leads the domain (no writer)
    watermark_ms: int | None  # this node's own, while it leads


def leader_watermark(view: ClusterView, domain: str) -> int | None:
    """The newest watermark any node reported for ``domain``: each is a fact about what that
    node committed, so the newest one bounds what is safely in the database."""
    marks = []
    for member in view.members.values():
        watermarks = member.info.get("watermarks")
        if isinstance(watermarks, dict):
            mark = watermarks.get(domain)
            if isinstance(mark, int) and not isinstance(mark, bool):
                marks.append(mark)
    return max(marks) if marks else None


def refusal_message(
    node: str, domain: str, role: str, view: ClusterView, api_urls: Mapping[str, str]
) -> str:
    """Why ``node`` does not take a write for ``domain``, and where to send it instead."""
    if role == "promoting":
        return (
            f"node {node} is taking over domain {domain} right now (writing its backlog and "
            "re-deriving the MES); try again in a few seconds"
        )
    holder = view.holder(domain)
    if holder is None or holder == node:
        reason = f"; the arbiter cannot be read ({view.error})" if view.error else ""
        return (
            f"node {node} is passive for domain {domain} and no node is active for it now "
            f"(a failover is under way{reason}); try again shortly"
        )
    url = view.api_url(holder, api_urls)
    where = f" at {url}" if url else ""
    return (
        f"node {node} is passive (hot standby) for domain {domain}: writes go to the active "
        f"node, {holder}{where}"
    )


def status_document(
    node: str,
    reports: list[DomainReport],
    view: ClusterView,
    *,
    ttl_ms: int,
    api_urls: Mapping[str, str],
    wall_now_ms: int,
) -> dict[str, Any]:
    """``GET /api/v1/cluster``: nodes (last seen), domains (holder, epoch, lease expiry, this
    node's role) and lag (this node's spool, the age of the leader's watermark)."""
    now = view.now_ms
    nodes = [
        {
            "node": m.node,
            "api_url": view.api_url(m.node, api_urls),
            "last_seen_ms": m.last_seen_ms,
            "seen_ago_ms": max(0, now - m.last_seen_ms),
            "alive": m.alive_at(now, ttl_ms),
            "host": m.info.get("host"),
            "pid": m.info.get("pid"),
            "roles": m.info.get("states") or m.info.get("roles") or {},
        }
        for m in sorted(view.members.values(), key=lambda m: m.node)
    ]
    domains = []
    for report in reports:
        lease = view.leases.get(report.domain)
        mark = leader_watermark(view, report.domain)
        domains.append(
            {
                "domain": report.domain,
                "host_id": report.host_id,
                "candidates": list(report.candidates),
                "holder": view.holder(report.domain),
                "epoch": None if lease is None else lease.epoch,
                "lease_expires_at_ms": None if lease is None else lease.expires_at_ms,
                "lease_expires_in_ms": None if lease is None else lease.expires_at_ms - now,
                "switchover_pending": lease is not None and lease.switchover_pending,
                "role": report.role,
                "role_since_ms": report.since_ms,
                "my_epoch": report.epoch,
                "primary_online": report.primary_online,
                "spool_samples": report.spool_samples,
                "watermark_ms": mark,
                "watermark_age_ms": None if mark is None else max(0, wall_now_ms - mark),
            }
        )
    return {
        "node": node,
        "arbiter_ok": view.error is None and view.read_at_ms is not None,
        "arbiter_error": view.error,
        "arbiter_now_ms": now,
        "read_at_ms": view.read_at_ms,
        "lease_ttl_ms": ttl_ms,
        "nodes": nodes,
        "domains": domains,
    }
