"""The lease loop against the in-memory arbiter on one manual clock (R-03, R-04, R-08 at unit
level), plus the loop on its own thread with the wall clock."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from andon.cluster.model import Lease, Role
from andon.cluster.plan import ClusterPlan, DomainPlan, LeaseTiming
from andon.cluster.runner import LeaseRunner
from andon.testing.clock import ManualClock
from andon.testing.memory_arbiter import MemoryArbiter
from andon.testing.processes import wait_until

TIMING = LeaseTiming(ttl_ms=3_000, renew_interval_ms=1_000, demote_margin_ms=500)
STEP_S = 0.05
DOMAINS = (DomainPlan("d1", candidates=("a", "b")), DomainPlan("d2", candidates=("b", "a")))


class Node:
    """One runner plus what its callbacks saw."""

    def __init__(
        self, node: str, arbiter: Any, clock: ManualClock, domains: Iterable[DomainPlan]
    ) -> None:
        self.events: list[tuple[str, str, object]] = []
        self.runner = LeaseRunner(
            arbiter,
            ClusterPlan(node_id=node, domains=tuple(domains), timing=TIMING),
            on_promote=lambda d, e: self.events.append(("promote", d, e)),
            on_demote=lambda d, r: self.events.append(("demote", d, r)),
            monotonic=clock.monotonic,
            call_timeout_s=5.0,
        )
        self.alive = True


class Cluster:
    def __init__(self, domains: tuple[DomainPlan, ...] = DOMAINS, nodes: str = "ab") -> None:
        self.clock = ManualClock()
        self.arbiter = MemoryArbiter(
            {d.name: d.candidates for d in domains}, clock=self.clock.now_ms
        )
        self.nodes = {n: Node(n, self.arbiter, self.clock, domains) for n in nodes}
        self.domains = domains

    def active(self, domain: str) -> list[str]:
        """Nodes that may write to ``domain`` right now (by their own clocks)."""
        return [n for n, node in self.nodes.items() if node.runner.token(domain) is not None]

    def run(self, seconds: float, until: Callable[[], bool] | None = None) -> float:
        """Step every living node every STEP_S; never two writers per domain. Returns the
        time taken (until ``until`` held, if given)."""
        taken = 0.0
        while taken < seconds:
            self.clock.advance(STEP_S)
            taken += STEP_S
            for node in self.nodes.values():
                if node.alive:
                    node.runner.step()
            for domain in self.domains:
                assert len(self.active(domain.name)) <= 1, f"two writers for {domain.name}"
            if until is not None and until():
                return taken
        if until is not None:
            raise AssertionError(f"condition not met within {seconds} s")
        return taken

    def lease(self, domain: str) -> Lease:
        return next(x for x in self.arbiter.leases() if x.domain == domain)


def test_cold_start_gives_each_domain_to_its_preferred_node() -> None:
    cluster = Cluster()
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    assert a.runner.token("d1") is None  # a node never starts active
    cluster.run(0.5)
    assert cluster.active("d1") == cluster.active("d2") == []  # hold-off: see each other first
    cluster.run(3.0)
    assert cluster.active("d1") == ["a"]
    assert cluster.active("d2") == ["b"]
    assert a.runner.roles() == {"d1": Role.ACTIVE, "d2": Role.PASSIVE}
    assert a.events == [("promote", "d1", 1)]
    assert b.events == [("promote", "d2", 1)]
    token = a.runner.token("d1")
    assert token is not None
    assert (token.domain, token.epoch, token.node) == ("d1", 1, "a")
    members = {m.node: m for m in cluster.arbiter.members()}
    assert members["a"].info["roles"] == {"d1": "active", "d2": "passive"}


def test_a_killed_holder_is_replaced_within_ttl_plus_renew_interval() -> None:
    cluster = Cluster()
    cluster.run(4.0)
    a = cluster.nodes["a"]
    a.alive = False  # kill -9: no release, no more steps
    killed_at = cluster.clock.monotonic()
    taken = cluster.run(10.0, until=lambda: cluster.active("d1") == ["b"])
    bound = (TIMING.ttl_ms + TIMING.renew_interval_ms) / 1000
    assert taken <= bound + STEP_S, f"failover took {taken:.2f} s, bound {bound:.2f} s"
    # Its own clock had already ended a's leadership, although its loop never ran again.
    assert a.runner.token("d1") is None
    assert cluster.lease("d1").epoch == 2
    assert cluster.lease("d2").epoch == 1  # b's own domain did not move
    assert cluster.clock.monotonic() - killed_at == pytest.approx(taken)


def test_an_unreachable_arbiter_demotes_before_the_lease_expires() -> None:
    cluster = Cluster(domains=(DomainPlan("d1", candidates=("a", "b")),))
    cluster.run(3.0)
    assert cluster.active("d1") == ["a"]
    a = cluster.nodes["a"]
    cluster.arbiter.unreachable = True
    cluster.run(5.0, until=lambda: ("demote", "d1") in [e[:2] for e in a.events])
    demoted_at_ms = cluster.clock.now_ms()
    cluster.arbiter.unreachable = False
    assert demoted_at_ms < cluster.lease("d1").expires_at_ms  # by the arbiter's clock
    assert cluster.active("d1") == []  # nobody leads while the arbiter is away
    cluster.run(6.0, until=lambda: len(cluster.active("d1")) == 1)


def test_a_switchover_moves_the_domain_without_overlap() -> None:
    cluster = Cluster(domains=(DomainPlan("d1", candidates=("a", "b")),))
    cluster.run(3.0)
    cluster.arbiter.request_switchover("d1", "b", TIMING.ttl_ms)
    cluster.run(3.0, until=lambda: cluster.active("d1") == ["b"])
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    assert a.events[-1][:2] == ("demote", "d1")
    assert "switchover" in str(a.events[-1][2])
    assert b.events == [("promote", "d1", 2)]
    cluster.run(5.0)  # and it stays there: the old holder does not take it back
    assert cluster.active("d1") == ["b"]


def test_a_clean_stop_hands_over_without_waiting_for_expiry() -> None:
    cluster = Cluster(domains=(DomainPlan("d1", candidates=("a", "b")),))
    cluster.run(3.0)
    a = cluster.nodes["a"]
    a.runner.stop()
    a.alive = False
    assert a.events[-1][:2] == ("demote", "d1")
    assert cluster.lease("d1").holder_at(cluster.clock.now_ms()) is None
    taken = cluster.run(5.0, until=lambda: cluster.active("d1") == ["b"])
    # b waits only until a's heartbeat is stale (it was preferred), not for a lease expiry.
    assert taken <= (TIMING.ttl_ms + TIMING.renew_interval_ms) / 1000


class StuckArbiter(MemoryArbiter):
    """renew() blocks until released, like a database behind a cut network link."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stuck = threading.Event()
        self.unblock = threading.Event()

    def renew(self, domain: str, node: str, epoch: int, ttl_ms: int) -> Lease | None:
        if self.stuck.is_set():
            assert self.unblock.wait(30)
        return super().renew(domain, node, epoch, ttl_ms)


def test_a_hanging_arbiter_call_does_not_stop_the_demotion() -> None:
    clock = ManualClock()
    arbiter = StuckArbiter(clock=clock.now_ms)
    demoted = threading.Event()
    runner = LeaseRunner(
        arbiter,
        ClusterPlan.single_node("a", timing=TIMING),
        on_demote=lambda _d, _r: demoted.set(),
        monotonic=clock.monotonic,
        call_timeout_s=0.05,
    )
    runner.step()
    assert runner.token("default") is not None
    arbiter.stuck.set()
    try:
        for _ in range(200):
            clock.advance(STEP_S)
            runner.step()
            if demoted.is_set():
                break
        assert demoted.is_set()
        assert runner.token("default") is None
        assert clock.monotonic() <= (TIMING.ttl_ms - TIMING.demote_margin_ms) / 1000 + STEP_S
    finally:
        arbiter.unblock.set()
        runner.stop()


def test_the_loop_thread_promotes_and_a_stop_demotes() -> None:
    arbiter = MemoryArbiter()
    promoted, demoted = threading.Event(), threading.Event()
    timing = LeaseTiming(ttl_ms=600, renew_interval_ms=150, demote_margin_ms=100)
    runner = LeaseRunner(
        arbiter,
        ClusterPlan.single_node("a", timing=timing),
        on_promote=lambda _d, _e: promoted.set(),
        on_demote=lambda _d, _r: demoted.set(),
    )
    runner.start()
    try:
        assert promoted.wait(10)
        assert runner.token("default") is not None
        first = arbiter.leases()[0]
        # Renewals keep it: wait until the arbiter has seen a later one.
        wait_until(
            lambda: arbiter.leases()[0].renewed_at_ms > first.renewed_at_ms, 10, "no renewal"
        )
        assert runner.role("default") is Role.ACTIVE
    finally:
        runner.stop()
    assert demoted.is_set()
    assert runner.token("default") is None
    assert arbiter.leases()[0].holder_at(arbiter.now_ms()) is None  # released


def test_a_longer_hold_off_lets_a_late_preferred_node_win() -> None:
    """``holdoff_ms``: nodes started up to that far apart still count as a simultaneous start
    (a cluster node passes one ttl), so the preferred one wins although it started last."""
    clock = ManualClock()
    domains = (DomainPlan("d1", candidates=("a", "b")),)
    arbiter = MemoryArbiter({"d1": ("a", "b")}, clock=clock.now_ms)
    plan_b = ClusterPlan(node_id="b", domains=domains, timing=TIMING)
    b = LeaseRunner(arbiter, plan_b, monotonic=clock.monotonic, holdoff_ms=TIMING.ttl_ms)
    for _ in range(int(2.0 / STEP_S)):  # b runs alone for 2 s, longer than one renew interval
        clock.advance(STEP_S)
        b.step()
    assert b.token("d1") is None
    plan_a = ClusterPlan(node_id="a", domains=domains, timing=TIMING)
    a = LeaseRunner(arbiter, plan_a, monotonic=clock.monotonic, holdoff_ms=TIMING.ttl_ms)
    for _ in range(int(5.0 / STEP_S)):
        clock.advance(STEP_S)
        b.step()
        a.step()
    assert a.token("d1") is not None
    assert b.token("d1") is None
