"""The arbiter contract (checklist D: R-01, R-02, R-08, R-09, R-17, switchover, expiry), run
against the in-memory, SQLite and PostgreSQL arbiters."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from _arbiter_harness import BACKENDS, ArbiterHarness, open_harness

from andon.cluster.model import Lease, SwitchoverError

LONG = 60_000  # a ttl no test outlives: the lease stays valid and heartbeats stay fresh
SHORT = 1_000  # a ttl the test lets pass


@pytest.fixture(params=BACKENDS)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArbiterHarness]:
    yield from open_harness(request, tmp_path)


def _lease(harness: ArbiterHarness, domain: str) -> Lease:
    return next(x for x in harness.arbiter().leases() if x.domain == domain)


def test_one_holder_and_a_second_candidate_fails_while_valid(harness: ArbiterHarness) -> None:
    arbiter = harness.arbiter()
    first = arbiter.try_acquire("line1", "a", LONG)
    assert first is not None
    assert (first.domain, first.node, first.epoch) == ("line1", "a", 1)
    assert first.expires_at_ms == first.acquired_at_ms + LONG
    assert arbiter.try_acquire("line1", "b", LONG) is None
    assert arbiter.renew("line1", "b", first.epoch, LONG) is None
    assert not arbiter.release("line1", "b", first.epoch)
    lease = _lease(harness, "line1")
    assert lease.holder_at(arbiter.now_ms()) == "a"
    assert lease.epoch == 1


def test_concurrent_candidates_one_winner(harness: ArbiterHarness) -> None:
    views = [harness.arbiter() for _ in range(6)]
    start = threading.Barrier(len(views))
    results: list[Lease | None] = [None] * len(views)

    def contend(index: int) -> None:
        start.wait(timeout=30)
        results[index] = views[index].try_acquire("line1", f"n{index}", LONG)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(len(views))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert winners[0].epoch == 1
    assert _lease(harness, "line1").node == winners[0].node


def test_takeover_increments_epoch_renewal_does_not(harness: ArbiterHarness) -> None:
    arbiter = harness.arbiter()
    first = arbiter.try_acquire("d", "a", LONG)
    assert first is not None
    renewed = arbiter.renew("d", "a", first.epoch, LONG)
    assert renewed is not None
    assert renewed.epoch == first.epoch == 1
    assert renewed.acquired_at_ms == first.acquired_at_ms
    assert renewed.expires_at_ms >= first.expires_at_ms
    assert arbiter.release("d", "a", 1)
    second = arbiter.try_acquire("d", "b", LONG)
    assert second is not None
    assert second.epoch == 2
    assert arbiter.renew("d", "a", 1, LONG) is None  # the old epoch is gone for good
    assert arbiter.release("d", "b", 2)
    third = arbiter.try_acquire("d", "a", LONG)
    assert third is not None
    assert third.epoch == 3


def test_expiry_by_the_arbiter_clock(harness: ArbiterHarness) -> None:
    arbiter = harness.arbiter()
    held = arbiter.try_acquire("d", "a", SHORT)
    assert held is not None
    assert arbiter.try_acquire("d", "b", SHORT) is None
    harness.pass_time(arbiter, SHORT + 1)
    assert arbiter.renew("d", "a", held.epoch, SHORT) is None  # expired: not renewable
    assert not arbiter.release("d", "a", held.epoch)
    taken = arbiter.try_acquire("d", "b", LONG)
    assert taken is not None
    assert (taken.node, taken.epoch) == ("b", 2)
    assert taken.acquired_at_ms >= held.expires_at_ms


def test_the_preferred_node_wins_a_simultaneous_start(harness: ArbiterHarness) -> None:
    arbiter = harness.arbiter({"d": ["a", "b"]})
    arbiter.heartbeat("b", {})
    arbiter.heartbeat("a", {})
    assert arbiter.try_acquire("d", "b", LONG) is None  # a is preferred and alive
    won = arbiter.try_acquire("d", "a", LONG)
    assert won is not None
    assert won.node == "a"
    assert arbiter.try_acquire("d", "c", LONG) is None  # not a candidate at all


def test_the_backup_takes_over_only_after_the_preferred_fails(harness: ArbiterHarness) -> None:
    arbiter = harness.arbiter({"d": ["a", "b"]})
    arbiter.heartbeat("a", {})
    arbiter.heartbeat("b", {})
    held = arbiter.try_acquire("d", "a", SHORT)
    assert held is not None
    assert arbiter.try_acquire("d", "b", SHORT) is None
    # a fails: no heartbeat, no renewal. b keeps heartbeating.
    harness.pass_time(arbiter, SHORT + 1)
    arbiter.heartbeat("b", {})
    # (the liveness window is the ttl asked for, the one every node of a cluster uses)
    taken = arbiter.try_acquire("d", "b", SHORT)
    assert taken is not None
    assert (taken.node, taken.epoch) == ("b", 2)
    assert arbiter.renew("d", "b", 2, LONG) is not None
    # a comes back: b's lease is not taken from it (no automatic failback).
    arbiter.heartbeat("a", {})
    assert arbiter.try_acquire("d", "a", LONG) is None
    assert arbiter.renew("d", "b", 2, LONG) is not None


def test_a_free_lease_still_goes_to_a_living_preferred_node(harness: ArbiterHarness) -> None:
    arbiter = harness.arbiter({"d": ["a", "b", "c"]})
    for node in ("a", "b", "c"):
        arbiter.heartbeat(node, {})
    held = arbiter.try_acquire("d", "a", LONG)
    assert held is not None
    assert arbiter.release("d", "a", held.epoch)
    assert arbiter.try_acquire("d", "c", LONG) is None
    assert arbiter.try_acquire("d", "b", LONG) is None  # a is alive and ranked first
    again = arbiter.try_acquire("d", "a", LONG)
    assert again is not None
    assert again.epoch == 2


def test_domains_are_independent(harness: ArbiterHarness) -> None:
    arbiter = harness.arbiter({"d1": ["a", "b"], "d2": ["b", "a"]})
    arbiter.heartbeat("a", {})
    arbiter.heartbeat("b", {})
    d1 = arbiter.try_acquire("d1", "a", SHORT)
    d2 = arbiter.try_acquire("d2", "b", LONG)
    assert d1 is not None
    assert d2 is not None
    assert (d1.epoch, d2.epoch) == (1, 1)
    assert arbiter.try_acquire("d1", "b", LONG) is None
    assert arbiter.try_acquire("d2", "a", LONG) is None
    # a fails: only its domain moves.
    harness.pass_time(arbiter, SHORT + 1)
    arbiter.heartbeat("b", {})
    moved = arbiter.try_acquire("d1", "b", SHORT)
    assert moved is not None
    assert (moved.node, moved.epoch) == ("b", 2)
    still = arbiter.renew("d2", "b", 1, LONG)
    assert still is not None
    assert still.epoch == 1


def test_switchover_hands_over_to_the_target(harness: ArbiterHarness) -> None:
    arbiter = harness.arbiter({"d": ["a", "b", "c"]})
    for node in ("a", "b", "c"):
        arbiter.heartbeat(node, {})
    held = arbiter.try_acquire("d", "a", LONG)
    assert held is not None
    requested = arbiter.request_switchover("d", "c", LONG)
    assert requested.switchover_pending
    assert (requested.switchover_from, requested.switchover_to) == ("a", "c")
    # The holder learns it on its next renewal, which extends nothing.
    seen = arbiter.renew("d", "a", held.epoch, LONG)
    assert seen is not None
    assert seen.switchover_pending
    assert seen.expires_at_ms == held.expires_at_ms
    assert arbiter.try_acquire("d", "c", LONG) is None  # still held until released
    assert arbiter.release("d", "a", held.epoch)
    assert arbiter.try_acquire("d", "a", LONG) is None  # the old holder is ranked last
    assert arbiter.try_acquire("d", "b", LONG) is None  # the target comes first
    taken = arbiter.try_acquire("d", "c", LONG)
    assert taken is not None
    assert (taken.node, taken.epoch) == ("c", held.epoch + 1)
    assert not _lease(harness, "d").switchover_pending


def test_switchover_without_target_goes_to_the_next_candidate(harness: ArbiterHarness) -> None:
    arbiter = harness.arbiter({"d": ["a", "b"]})
    arbiter.heartbeat("a", {})
    arbiter.heartbeat("b", {})
    held = arbiter.try_acquire("d", "a", LONG)
    assert held is not None
    arbiter.request_switchover("d", None, LONG)
    assert arbiter.release("d", "a", held.epoch)
    assert arbiter.try_acquire("d", "a", LONG) is None
    taken = arbiter.try_acquire("d", "b", LONG)
    assert taken is not None
    assert taken.epoch == 2


def test_switchover_back_to_the_old_holder_when_no_one_else_lives(
    harness: ArbiterHarness,
) -> None:
    arbiter = harness.arbiter({"d": ["a", "b"]})
    arbiter.heartbeat("a", {})
    arbiter.heartbeat("b", {})
    held = arbiter.try_acquire("d", "a", LONG)
    assert held is not None
    arbiter.request_switchover("d", "b", SHORT)
    assert arbiter.release("d", "a", held.epoch)
    harness.pass_time(arbiter, SHORT + 1)  # b died before taking over
    arbiter.heartbeat("a", {})
    back = arbiter.try_acquire("d", "a", SHORT)
    assert back is not None
    assert back.epoch == 2


def test_switchover_refusals_change_nothing(harness: ArbiterHarness) -> None:
    arbiter = harness.arbiter({"d": ["a", "b"], "e": ["a", "b"]})
    arbiter.heartbeat("a", {})
    with pytest.raises(SwitchoverError, match="no node holds"):
        arbiter.request_switchover("d", None, LONG)
    with pytest.raises(SwitchoverError, match="unknown domain"):
        arbiter.request_switchover("nope", None, LONG)
    held = arbiter.try_acquire("d", "a", LONG)
    assert held is not None
    with pytest.raises(SwitchoverError, match="no other candidate is alive"):
        arbiter.request_switchover("d", None, LONG)
    with pytest.raises(SwitchoverError, match="not alive"):
        arbiter.request_switchover("d", "b", LONG)
    with pytest.raises(SwitchoverError, match="already holds"):
        arbiter.request_switchover("d", "a", LONG)
    with pytest.raises(SwitchoverError, match="not a candidate"):
        arbiter.request_switchover("d", "z", LONG)
    lease = _lease(harness, "d")
    assert not lease.switchover_pending
    renewed = arbiter.renew("d", "a", held.epoch, LONG)
    assert renewed is not None
    assert not renewed.switchover_pending


def test_heartbeats_record_members(harness: ArbiterHarness) -> None:
    arbiter = harness.arbiter()
    before = arbiter.now_ms()
    arbiter.heartbeat("b", {"pid": 7, "roles": {"d": "passive"}})
    arbiter.heartbeat("a", {"pid": 3})
    harness.pass_time(arbiter, 5)
    arbiter.heartbeat("b", {"pid": 8})
    members = arbiter.members()
    assert [m.node for m in members] == ["a", "b"]
    a, b = members
    assert a.info == {"pid": 3}
    assert b.info == {"pid": 8}
    assert before <= a.last_seen_ms < b.last_seen_ms <= arbiter.now_ms()
    assert b.alive_at(arbiter.now_ms(), LONG)
