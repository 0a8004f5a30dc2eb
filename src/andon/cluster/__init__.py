"""Cluster: domains of control, leases with epochs, fencing tokens, roles (DESIGN.md §5).

Pure logic (no IO, no threads): ``model``, ``arbiter`` (the interface and its rules), ``plan``,
``domains``, ``lease_keeper``. IO adapters: ``runner`` (the lease loop thread) and ``watchdog``.
Implementations of the arbiter: ``andon.testing.memory_arbiter`` and
``andon.storage.cluster_arbiter`` (SQLite, PostgreSQL).
"""

from andon.cluster.arbiter import Arbiter
from andon.cluster.domains import DomainMap
from andon.cluster.lease_keeper import LeaseKeeper
from andon.cluster.model import (
    ArbiterError,
    FencedOut,
    FencingToken,
    Lease,
    Member,
    Role,
    SwitchoverError,
)
from andon.cluster.plan import DEFAULT_DOMAIN, ClusterPlan, DomainPlan, LeaseTiming

__all__ = [
    "DEFAULT_DOMAIN",
    "Arbiter",
    "ArbiterError",
    "ClusterPlan",
    "DomainMap",
    "DomainPlan",
    "FencedOut",
    "FencingToken",
    "Lease",
    "LeaseKeeper",
    "LeaseTiming",
    "Member",
    "Role",
    "SwitchoverError",
]
