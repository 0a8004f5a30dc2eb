"""The cluster as configured, in plain data: timings, domains and their ranked candidates.

Built from the settings (``andon.settings_cluster.ClusterSettings.plan``); every node of a
cluster reads the same configuration, so every node builds the same plan and only ``node_id``
differs.
"""

from __future__ import annotations

from dataclasses import dataclass

from andon.cluster.model import DEFAULT_FENCE_TIMEOUT_MS

__all__ = ["DEFAULT_DOMAIN", "ClusterPlan", "DomainPlan", "LeaseTiming"]

#: The implicit domain of a server with no domains configured: every asset, every edge.
DEFAULT_DOMAIN = "default"


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    """``ttl_ms``: lease length; renewals every ``renew_interval_ms``; the holder demotes
    ``demote_margin_ms`` before its lease could expire, on its own monotonic clock."""

    ttl_ms: int = 3_000
    renew_interval_ms: int = 1_000
    demote_margin_ms: int = 500

    def __post_init__(self) -> None:
        if self.ttl_ms <= 0 or self.renew_interval_ms <= 0 or self.demote_margin_ms <= 0:
            raise ValueError("lease ttl, renew interval and demote margin must be positive")
        if self.demote_margin_ms >= self.ttl_ms:
            raise ValueError(
                f"demote margin ({self.demote_margin_ms} ms) must be shorter than the lease ttl"
                f" ({self.ttl_ms} ms)"
            )
        if self.renew_interval_ms >= self.ttl_ms - self.demote_margin_ms:
            raise ValueError(
                f"renew interval ({self.renew_interval_ms} ms) must be shorter than ttl - margin"
                f" ({self.ttl_ms - self.demote_margin_ms} ms), or the holder demotes between"
                " two renewals"
            )


@dataclass(frozen=True, slots=True)
class DomainPlan:
    """A domain of control. ``candidates``: most preferred first; empty: any node, unranked."""

    name: str
    assets: tuple[str, ...] = ()
    edges: tuple[str, ...] = ()
    host_id: str = "andon"
    candidates: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ClusterPlan:
    node_id: str
    domains: tuple[DomainPlan, ...]
    timing: LeaseTiming = LeaseTiming()
    watchdog_stall_ms: int = 2_000
    fence_timeout_ms: int = DEFAULT_FENCE_TIMEOUT_MS

    @classmethod
    def single_node(
        cls, node_id: str, host_id: str = "andon", timing: LeaseTiming = LeaseTiming()
    ) -> ClusterPlan:
        """Today's single server: one implicit domain with every asset, led by whoever asks."""
        domain = DomainPlan(DEFAULT_DOMAIN, assets=("",), edges=("*",), host_id=host_id)
        return cls(node_id=node_id, domains=(domain,), timing=timing)

    def preferences(self) -> dict[str, tuple[str, ...]]:
        """Domain -> candidates, most preferred first (what an arbiter ranks by)."""
        return {domain.name: domain.candidates for domain in self.domains}

    def led_domains(self) -> tuple[DomainPlan, ...]:
        """The domains this node may lead (it is a candidate, or they are unranked)."""
        return tuple(d for d in self.domains if not d.candidates or self.node_id in d.candidates)

    def domain(self, name: str) -> DomainPlan:
        for domain in self.domains:
            if domain.name == name:
                return domain
        raise KeyError(f"unknown domain {name!r} (configured: {self._names()})")

    def _names(self) -> str:
        return ", ".join(d.name for d in self.domains)
