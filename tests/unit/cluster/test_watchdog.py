"""The lease watchdog (R-16): a stalled lease loop kills the process; a frozen process does
not (SIGSTOP then SIGCONT must rejoin as passive, not die)."""

from __future__ import annotations

import threading

from andon.cluster.plan import ClusterPlan, LeaseTiming
from andon.cluster.runner import LeaseRunner
from andon.cluster.watchdog import LeaseWatchdog
from andon.testing.clock import ManualClock
from andon.testing.memory_arbiter import MemoryArbiter
from andon.testing.processes import wait_until


def test_fires_once_progress_is_older_than_the_limit() -> None:
    clock = ManualClock()
    kills: list[float] = []
    progress = 0.0
    dog = LeaseWatchdog(
        lambda: progress, 2.0, kill=lambda: kills.append(clock.monotonic()),
        monotonic=clock.monotonic,
    )  # fmt: skip
    for _ in range(19):  # 1.9 s of checks, the loop moving on every time
        clock.advance(0.1)
        progress = clock.monotonic()
        assert not dog.check()
    for _ in range(20):  # the loop stops at 1.9 s: 2.0 s later it is killed
        clock.advance(0.1)
        if dog.check():
            break
    assert kills == [clock.monotonic()]
    assert kills[0] - progress > 2.0
    assert dog.fired.is_set()


def test_a_frozen_process_gets_a_fresh_limit_instead_of_a_kill() -> None:
    clock = ManualClock()
    kills: list[float] = []
    dog = LeaseWatchdog(lambda: 0.0, 2.0, kill=lambda: kills.append(1.0), monotonic=clock.monotonic)
    clock.advance(1.0)
    assert not dog.check()
    clock.advance(30.0)  # SIGSTOP ... SIGCONT: the watchdog itself did not run either
    assert not dog.check()
    clock.advance(1.9)
    assert not dog.check()  # the resumed loop has its full limit to catch up
    clock.advance(0.2)
    assert dog.check()  # but not more
    assert kills == [1.0]


def test_a_blocking_call_in_the_lease_loop_gets_the_process_killed() -> None:
    """The real loop and watchdog threads; the kill is injected."""
    arbiter = MemoryArbiter()
    blocked, release = threading.Event(), threading.Event()

    def blocking_promote(_domain: str, _epoch: int) -> None:
        blocked.set()
        release.wait(30)  # the injected blocking call

    timing = LeaseTiming(ttl_ms=600, renew_interval_ms=150, demote_margin_ms=100)
    runner = LeaseRunner(
        arbiter, ClusterPlan.single_node("a", timing=timing), on_promote=blocking_promote
    )
    killed = threading.Event()
    dog = LeaseWatchdog(lambda: runner.last_progress, 0.3, kill=killed.set)
    runner.start()
    dog.start()
    try:
        assert blocked.wait(10)
        assert killed.wait(10), "the watchdog never fired"
        assert dog.fired.is_set()
    finally:
        release.set()
        dog.stop()
        runner.stop()


def test_a_healthy_loop_is_left_alone() -> None:
    arbiter = MemoryArbiter()
    timing = LeaseTiming(ttl_ms=600, renew_interval_ms=150, demote_margin_ms=100)
    promoted = threading.Event()
    runner = LeaseRunner(
        arbiter,
        ClusterPlan.single_node("a", timing=timing),
        on_promote=lambda _d, _e: promoted.set(),
    )
    killed = threading.Event()
    dog = LeaseWatchdog(lambda: runner.last_progress, 0.3, kill=killed.set)
    runner.start()
    dog.start()
    try:
        assert promoted.wait(10)
        # Several stall limits of a working loop (renewals for 1.5 s): nobody is killed.
        first = arbiter.leases()[0].renewed_at_ms
        wait_until(lambda: arbiter.leases()[0].renewed_at_ms >= first + 1_500, 15, "no renewals")
        assert not killed.is_set()
        assert runner.token("default") is not None
    finally:
        dog.stop()
        runner.stop()
