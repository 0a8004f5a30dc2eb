"""The cluster's records: roles, leases, members, fencing tokens, and the errors around them.

Times in a ``Lease`` or ``Member`` are the arbiter's clock (the database's, never a node's) in
UTC milliseconds; a node compares them only with ``Arbiter.now_ms()``, and times its own
leadership on its monotonic clock (``LeaseKeeper``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "DEFAULT_FENCE_TIMEOUT_MS",
    "ArbiterError",
    "FencedOut",
    "FencingToken",
    "Lease",
    "Member",
    "Role",
    "SwitchoverError",
]

#: How long a fenced database transaction may take per statement (it holds up a takeover).
DEFAULT_FENCE_TIMEOUT_MS = 1_000


class Role(StrEnum):
    """A node's role in one domain of control."""

    ACTIVE = "active"  # holds the domain's lease: writes, commands equipment
    PASSIVE = "passive"  # hot standby: receives and computes, writes nothing


@dataclass(frozen=True, slots=True)
class Lease:
    """One domain's lease row. ``node`` stays the last holder after expiry or release."""

    domain: str
    node: str | None
    epoch: int
    acquired_at_ms: int
    renewed_at_ms: int
    expires_at_ms: int
    switchover_from: str | None = None
    switchover_to: str | None = None
    switchover_requested_at_ms: int | None = None

    @property
    def switchover_pending(self) -> bool:
        return self.switchover_requested_at_ms is not None

    def holder_at(self, now_ms: int) -> str | None:
        """The node holding the lease at arbiter time ``now_ms``, if any."""
        return self.node if self.node is not None and self.expires_at_ms > now_ms else None


@dataclass(frozen=True, slots=True)
class Member:
    """A node as its last heartbeat described it."""

    node: str
    last_seen_ms: int
    info: Mapping[str, Any] = field(default_factory=dict)

    def alive_at(self, now_ms: int, window_ms: int) -> bool:
        return self.last_seen_ms > now_ms - window_ms


@dataclass(frozen=True, slots=True)
class FencingToken:
    """What a write for ``domain`` must prove in its own transaction: the lease still carries
    this ``epoch`` and ``node`` and has not expired. ``statement_timeout_ms`` bounds each
    statement of the fenced transaction, which a takeover has to wait for."""

    domain: str
    epoch: int
    node: str
    statement_timeout_ms: int = DEFAULT_FENCE_TIMEOUT_MS


class FencedOut(Exception):
    """A fenced write was refused: this node no longer leads the domain. Nothing was written."""

    def __init__(self, token: FencingToken, reason: str) -> None:
        super().__init__(
            f"fenced out of domain {token.domain!r} (node {token.node}, epoch {token.epoch}):"
            f" {reason}"
        )
        self.token = token
        self.reason = reason


class ArbiterError(Exception):
    """The arbiter could not be asked (unreachable, timed out). Never extends leadership."""


class SwitchoverError(ValueError):
    """A switchover request that cannot be carried out (the message says why)."""
