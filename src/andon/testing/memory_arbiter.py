"""An arbiter in memory with an injectable clock: the reference for the arbiter contract suite.

It applies the same rules (``andon.cluster.arbiter``) as the SQL arbiters, atomically under one
lock. ``check_fence`` lets the in-memory historian store fence its writes against it, and
``unreachable`` makes every call fail like a database that cannot be reached.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from andon.cluster.arbiter import acquisition_refusal, switchover_refusal
from andon.cluster.model import (
    ArbiterError,
    FencedOut,
    FencingToken,
    Lease,
    Member,
    SwitchoverError,
)

__all__ = ["MemoryArbiter"]


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class MemoryArbiter:
    def __init__(
        self,
        preferences: Mapping[str, Sequence[str]] | None = None,
        *,
        clock: Callable[[], int] = _wall_clock_ms,
    ) -> None:
        self._preferences = {k: tuple(v) for k, v in (preferences or {}).items()}
        self._clock = clock
        self._lock = threading.Lock()
        self._leases: dict[str, Lease] = {}
        self._members: dict[str, Member] = {}
        self.unreachable = False

    def _enter(self) -> int:
        if self.unreachable:
            raise ArbiterError("memory arbiter made unreachable by the test")
        return self._clock()

    def _last_seen(self) -> dict[str, int]:
        return {node: member.last_seen_ms for node, member in self._members.items()}

    def now_ms(self) -> int:
        return self._enter()

    def heartbeat(self, node: str, info: Mapping[str, Any]) -> None:
        with self._lock:
            now = self._enter()
            self._members[node] = Member(node, now, dict(info))

    def try_acquire(self, domain: str, node: str, ttl_ms: int) -> Lease | None:
        with self._lock:
            now = self._enter()
            lease = self._leases.get(domain)
            refusal = acquisition_refusal(
                lease=lease,
                node=node,
                now_ms=now,
                ttl_ms=ttl_ms,
                preference=self._preferences.get(domain, ()),
                last_seen=self._last_seen(),
            )
            if refusal is not None:
                return None
            taken = Lease(
                domain=domain,
                node=node,
                epoch=(0 if lease is None else lease.epoch) + 1,
                acquired_at_ms=now,
                renewed_at_ms=now,
                expires_at_ms=now + ttl_ms,
            )
            self._leases[domain] = taken
            return taken

    def renew(self, domain: str, node: str, epoch: int, ttl_ms: int) -> Lease | None:
        with self._lock:
            now = self._enter()
            lease = self._leases.get(domain)
            if lease is None or lease.holder_at(now) != node or lease.epoch != epoch:
                return None
            if lease.switchover_pending:
                return lease
            renewed = dataclasses.replace(lease, renewed_at_ms=now, expires_at_ms=now + ttl_ms)
            self._leases[domain] = renewed
            return renewed

    def release(self, domain: str, node: str, epoch: int) -> bool:
        with self._lock:
            now = self._enter()
            lease = self._leases.get(domain)
            if lease is None or lease.holder_at(now) != node or lease.epoch != epoch:
                return False
            self._leases[domain] = dataclasses.replace(lease, expires_at_ms=now)
            return True

    def request_switchover(self, domain: str, to_node: str | None, ttl_ms: int) -> Lease:
        with self._lock:
            now = self._enter()
            lease = self._leases.get(domain)
            if lease is None and domain not in self._preferences:
                raise SwitchoverError(f"unknown domain {domain!r}")
            refusal = switchover_refusal(
                lease=lease,
                to_node=to_node,
                now_ms=now,
                ttl_ms=ttl_ms,
                preference=self._preferences.get(domain, ()),
                last_seen=self._last_seen(),
            )
            if refusal is not None:
                raise SwitchoverError(f"domain {domain}: {refusal}")
            assert lease is not None
            requested = dataclasses.replace(
                lease,
                switchover_from=lease.node,
                switchover_to=to_node,
                switchover_requested_at_ms=now,
            )
            self._leases[domain] = requested
            return requested

    def leases(self) -> list[Lease]:
        with self._lock:
            self._enter()
            return [self._leases[d] for d in sorted(self._leases)]

    def members(self) -> list[Member]:
        with self._lock:
            self._enter()
            return [self._members[n] for n in sorted(self._members)]

    @contextmanager
    def fenced(self, token: FencingToken) -> Iterator[None]:
        """Run the body as a fenced write: ``FencedOut`` unless ``token`` matches the unexpired
        lease of its domain, and no takeover until the body is done (the in-memory R-07)."""
        with self._lock:
            now = self._enter()
            lease = self._leases.get(token.domain)
            if lease is None or lease.node != token.node or lease.epoch != token.epoch:
                raise FencedOut(token, "the lease carries another node or epoch")
            if lease.expires_at_ms <= now:
                raise FencedOut(token, "the lease has expired")
            yield

    def close(self) -> None:
        """Nothing to release."""
