"""The arbiter interface and the rules every implementation applies.

An arbiter keeps one lease per domain of control and the heartbeats of the nodes, timed by its
own clock. The rules live here, as pure functions over a snapshot, so the in-memory, SQLite and
PostgreSQL arbiters cannot disagree; each implementation only makes the snapshot and the change
atomic. Rules:

* ``try_acquire`` succeeds only if the lease is free (never held, expired or released) or held
  by the asking node itself, and no candidate ranked before the asking node has heartbeated
  within the ttl: the preferred node wins a simultaneous start, and a backup takes over only
  once the preferred node has failed. Every success is a takeover and increments the epoch.
* A pending switchover ranks the node it moves away from last and the requested target (while
  it is alive) first, so the hand-off goes where it was asked to, and back to the old holder
  only if no other candidate is alive.
* ``renew`` extends only the caller's own unexpired lease of the same epoch. While a switchover
  is pending it extends nothing and returns the lease with ``switchover_pending`` set: the
  holder stops writing, then releases.
* Domains with no candidate list (the implicit single-node domain) accept any node, unranked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from andon.cluster.model import Lease, Member

__all__ = ["Arbiter", "acquisition_refusal", "ranked_candidates", "switchover_refusal"]


class Arbiter(Protocol):
    """Leases and heartbeats; implementations raise ``ArbiterError`` when unreachable."""

    def now_ms(self) -> int:
        """The arbiter's clock, UTC milliseconds."""
        ...

    def heartbeat(self, node: str, info: Mapping[str, Any]) -> None:
        """Record that ``node`` is alive now, with what it says about itself."""
        ...

    def try_acquire(self, domain: str, node: str, ttl_ms: int) -> Lease | None:
        """Take the lease of ``domain`` for ``ttl_ms`` (a takeover: epoch + 1), or None."""
        ...

    def renew(self, domain: str, node: str, epoch: int, ttl_ms: int) -> Lease | None:
        """Extend the caller's lease; None if it is not the caller's (any more)."""
        ...

    def release(self, domain: str, node: str, epoch: int) -> bool:
        """End the caller's lease now (it stays with its epoch for the next takeover)."""
        ...

    def request_switchover(self, domain: str, to_node: str | None, ttl_ms: int) -> Lease:
        """Ask the holder of ``domain`` to hand over to ``to_node`` (None: the best other
        candidate). Raises ``SwitchoverError`` if that cannot happen."""
        ...

    def leases(self) -> list[Lease]:
        """Every domain's lease row, by domain."""
        ...

    def members(self) -> list[Member]:
        """Every node that ever heartbeated, by node."""
        ...

    def close(self) -> None: ...


def ranked_candidates(lease: Lease | None, preference: Sequence[str], alive: set[str]) -> list[str]:
    """The candidates in the order they may take the lease, a pending switchover applied."""
    ranked = list(preference)
    if lease is None or not lease.switchover_pending:
        return ranked
    leaving = lease.switchover_from
    if leaving in ranked:
        ranked.remove(leaving)
        ranked.append(leaving)
    target = lease.switchover_to
    if target in ranked and target in alive:
        ranked.remove(target)
        ranked.insert(0, target)
    return ranked


def acquisition_refusal(
    *,
    lease: Lease | None,
    node: str,
    now_ms: int,
    ttl_ms: int,
    preference: Sequence[str],
    last_seen: Mapping[str, int],
) -> str | None:
    """Why ``node`` may not take the lease now, or None if it may."""
    if ttl_ms <= 0:
        return f"ttl must be positive, got {ttl_ms} ms"
    if lease is not None:
        holder = lease.holder_at(now_ms)
        if holder is not None and holder != node:
            return f"held by {holder} (epoch {lease.epoch}) until {lease.expires_at_ms}"
    alive = {n for n, seen in last_seen.items() if seen > now_ms - ttl_ms}
    if lease is not None and lease.switchover_pending:
        target = lease.switchover_to
        if target is not None and target != node and target in alive:
            # The named target is honoured by every node, also by one whose configuration
            # does not list it yet: during a migration old nodes run the old candidate list.
            return f"a switchover to {target} is pending"
    if not preference:
        if lease is None or not lease.switchover_pending:
            return None
        # Unranked domain: only the switchover orders the nodes (the old holder last).
        preference = sorted(alive | {node})
    if node not in preference:
        return f"{node} is not a candidate of this domain"
    for other in ranked_candidates(lease, preference, alive):
        if other == node:
            return None
        if other in alive:
            return f"{other} is preferred and alive"
    raise AssertionError("unreachable: node is in the preference list")


def switchover_refusal(
    *,
    lease: Lease | None,
    to_node: str | None,
    now_ms: int,
    ttl_ms: int,
    preference: Sequence[str],
    last_seen: Mapping[str, int],
) -> str | None:
    """Why a switchover of ``lease`` to ``to_node`` cannot be requested now, or None."""
    holder = None if lease is None else lease.holder_at(now_ms)
    if lease is None or holder is None:
        return "no node holds the lease now; the next candidate takes it by itself"
    alive = {n for n, seen in last_seen.items() if seen > now_ms - ttl_ms}
    if to_node is not None:
        if to_node == holder:
            return f"{to_node} already holds the lease"
        if preference and to_node not in preference:
            return f"{to_node} is not a candidate of this domain ({', '.join(preference)})"
        if to_node not in alive:
            return f"{to_node} is not alive (no heartbeat within {ttl_ms} ms)"
        return None
    others = [n for n in (preference or sorted(alive)) if n != holder and n in alive]
    if not others:
        return "no other candidate is alive to take over"
    return None
