"""The lease of one domain as seen by one node: a state machine, no IO, no clock of its own.

The runner feeds it events (``tick`` with the monotonic time, the results of the arbiter calls
it asked for, errors, ``stop``) and carries out the actions it returns, in order. Rules:

* A node never starts active: it starts passive and becomes active only by a successful
  ``try_acquire`` (which the arbiter grants only for a free or expired lease), after an optional
  hold-off that lets nodes started together see each other's heartbeats first.
* The holder renews every ``renew_interval``. Its leadership ends on its own monotonic clock at
  ``sent + ttl - margin``, where ``sent`` is when the last successful acquire or renew was
  *sent*: the arbiter started the lease no earlier than that, so the node demotes before the
  lease can expire whatever the arbiter's clock says and however late the answer came.
* An arbiter error or timeout never extends leadership; the renewal is retried soon.
* A refused renewal (the lease is not ours any more) demotes at once. A pending switchover seen
  on a renewal demotes (the node stops writing) and only then releases the lease.
* Demote always comes before Release in the returned actions.
"""

from __future__ import annotations

from dataclasses import dataclass

from andon.cluster.model import Lease, Role
from andon.cluster.plan import LeaseTiming

__all__ = [
    "Demote",
    "KeeperAction",
    "LeaseKeeper",
    "Promote",
    "Release",
    "Renew",
    "TryAcquire",
]


@dataclass(frozen=True, slots=True)
class TryAcquire:
    """Call ``arbiter.try_acquire`` and report with ``on_acquire`` or ``on_error``."""


@dataclass(frozen=True, slots=True)
class Renew:
    """Call ``arbiter.renew`` for ``epoch`` and report with ``on_renew`` or ``on_error``."""

    epoch: int


@dataclass(frozen=True, slots=True)
class Promote:
    """This node now leads the domain with ``epoch``."""

    epoch: int


@dataclass(frozen=True, slots=True)
class Demote:
    """Stop acting for the domain now; ``reason`` says why."""

    reason: str


@dataclass(frozen=True, slots=True)
class Release:
    """Call ``arbiter.release`` for ``epoch`` (fire and forget: an unreleased lease expires)."""

    epoch: int


KeeperAction = TryAcquire | Renew | Promote | Demote | Release


class LeaseKeeper:
    """One node's lease of one domain. Times are monotonic seconds (``time.monotonic``)."""

    def __init__(
        self,
        node: str,
        domain: str,
        timing: LeaseTiming,
        *,
        now: float,
        holdoff_ms: int = 0,
    ) -> None:
        self.node = node
        self.domain = domain
        self._ttl = timing.ttl_ms / 1000
        self._renew_interval = timing.renew_interval_ms / 1000
        self._margin = timing.demote_margin_ms / 1000
        # A failed renewal is retried this soon; several tries fit before the deadline.
        self._retry_delay = self._renew_interval / 4
        self._role = Role.PASSIVE
        self._epoch: int | None = None
        self._deadline = 0.0
        self._in_flight: tuple[type[TryAcquire] | type[Renew], float] | None = None
        self._next_attempt = now + holdoff_ms / 1000
        self._stopped = False

    # -- state --------------------------------------------------------------------------------

    @property
    def role(self) -> Role:
        return self._role

    @property
    def epoch(self) -> int | None:
        """The epoch this node leads with (None while passive)."""
        return self._epoch if self._role is Role.ACTIVE else None

    @property
    def deadline(self) -> float | None:
        """Monotonic time at which leadership ends unless renewed (None while passive)."""
        return self._deadline if self._role is Role.ACTIVE else None

    def may_write(self, now: float) -> bool:
        """Active and the local deadline has not passed: checked at the moment of the write,
        not only at ticks, so a node whose ticks stall still stops writing on time."""
        return self._role is Role.ACTIVE and now < self._deadline

    def due_at(self) -> float | None:
        """When ``tick`` next has something to do (None: nothing until an answer arrives)."""
        times: list[float] = []
        if self._role is Role.ACTIVE:
            times.append(self._deadline)
        if self._in_flight is None and not self._stopped:
            times.append(self._next_attempt)
        return min(times) if times else None

    # -- events -------------------------------------------------------------------------------

    def tick(self, now: float) -> list[KeeperAction]:
        actions: list[KeeperAction] = []
        if self._role is Role.ACTIVE and now >= self._deadline:
            actions.append(self._demote(now, "lease not renewed in time (local deadline passed)"))
        if self._in_flight is not None or self._stopped or now < self._next_attempt:
            return actions
        if self._role is Role.ACTIVE:
            assert self._epoch is not None
            self._in_flight = (Renew, now)
            actions.append(Renew(self._epoch))
        else:
            self._in_flight = (TryAcquire, now)
            actions.append(TryAcquire())
        return actions

    def on_acquire(self, now: float, lease: Lease | None) -> list[KeeperAction]:
        sent = self._answered(TryAcquire)
        self._next_attempt = sent + self._renew_interval
        if lease is None:
            return []
        deadline = sent + self._ttl - self._margin
        if self._stopped or now >= deadline:
            # Granted, but too late to use safely (or while stopping): give it back.
            return [Release(lease.epoch)]
        self._role = Role.ACTIVE
        self._epoch = lease.epoch
        self._deadline = deadline
        return [Promote(lease.epoch)]

    def on_renew(self, now: float, lease: Lease | None) -> list[KeeperAction]:
        sent = self._answered(Renew)
        if self._role is not Role.ACTIVE:
            # Demoted while the renewal was on its way: a lease it still granted is returned.
            self._next_attempt = now
            return [] if lease is None or lease.node != self.node else [Release(lease.epoch)]
        epoch = self._epoch
        assert epoch is not None
        if lease is None or lease.epoch != epoch or lease.node != self.node:
            return [self._demote(now, "lease lost: the arbiter refused the renewal")]
        if lease.switchover_pending:
            target = lease.switchover_to or "the next candidate"
            demote = self._demote(now, f"switchover to {target} requested")
            self._next_attempt = now + self._renew_interval
            return [demote, Release(epoch)]
        deadline = sent + self._ttl - self._margin
        if now >= deadline:
            return [self._demote(now, "renewal answered too late"), Release(epoch)]
        self._deadline = max(self._deadline, deadline)
        self._next_attempt = sent + self._renew_interval
        return []

    def on_error(self, now: float, error: str) -> list[KeeperAction]:
        """The requested arbiter call failed or timed out; nothing is extended."""
        if self._in_flight is None:
            raise RuntimeError(f"{self.domain}: arbiter error reported with no call in flight")
        kind, _ = self._in_flight
        self._in_flight = None
        self._next_attempt = now + (self._retry_delay if kind is Renew else self._renew_interval)
        return []

    def stop(self, now: float) -> list[KeeperAction]:
        """Shut down: no further attempts; an active node demotes and releases."""
        self._stopped = True
        if self._role is not Role.ACTIVE:
            return []
        epoch = self._epoch
        assert epoch is not None
        return [self._demote(now, "node stopping"), Release(epoch)]

    # -- internals ----------------------------------------------------------------------------

    def _answered(self, kind: type[TryAcquire] | type[Renew]) -> float:
        if self._in_flight is None or self._in_flight[0] is not kind:
            raise RuntimeError(f"{self.domain}: answer to {kind.__name__} that was not asked")
        sent = self._in_flight[1]
        self._in_flight = None
        return sent

    def _demote(self, now: float, reason: str) -> Demote:
        self._role = Role.PASSIVE
        self._epoch = None
        self._deadline = 0.0
        self._next_attempt = now
        return Demote(reason)
