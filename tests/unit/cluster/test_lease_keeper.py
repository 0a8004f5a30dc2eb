"""The lease state machine of one node and domain, on a fake monotonic clock (seconds)."""

from __future__ import annotations

import pytest

from andon.cluster.lease_keeper import (
    Demote,
    LeaseKeeper,
    Promote,
    Release,
    Renew,
    TryAcquire,
)
from andon.cluster.model import Lease, Role
from andon.cluster.plan import LeaseTiming

TIMING = LeaseTiming(ttl_ms=3_000, renew_interval_ms=1_000, demote_margin_ms=500)


def _lease(epoch: int = 4, node: str = "a", **extra: object) -> Lease:
    return Lease("d", node, epoch, 0, 0, 3_000, **extra)  # type: ignore[arg-type]


def _active(sent: float = 0.0, answered: float = 0.2, epoch: int = 4) -> LeaseKeeper:
    keeper = LeaseKeeper("a", "d", TIMING, now=sent)
    assert keeper.tick(sent) == [TryAcquire()]
    assert keeper.on_acquire(answered, _lease(epoch)) == [Promote(epoch)]
    return keeper


def test_a_node_starts_passive_and_only_an_acquired_lease_makes_it_active() -> None:
    keeper = LeaseKeeper("a", "d", TIMING, now=0.0)
    assert keeper.role is Role.PASSIVE
    assert not keeper.may_write(0.0)
    assert keeper.tick(0.0) == [TryAcquire()]
    assert keeper.tick(0.1) == []  # one request at a time
    assert keeper.on_acquire(0.1, None) == []
    assert keeper.role is Role.PASSIVE
    assert keeper.epoch is None
    assert keeper.tick(0.9) == []
    assert keeper.tick(1.0) == [TryAcquire()]  # retried every renew interval


def test_the_hold_off_delays_the_first_attempt() -> None:
    keeper = LeaseKeeper("a", "d", TIMING, now=10.0, holdoff_ms=1_000)
    assert keeper.tick(10.0) == []
    assert keeper.tick(10.999) == []
    assert keeper.due_at() == pytest.approx(11.0)
    assert keeper.tick(11.0) == [TryAcquire()]


def test_leadership_ends_at_sent_plus_ttl_minus_margin_not_at_the_answer() -> None:
    keeper = _active(sent=0.0, answered=0.9)
    assert keeper.role is Role.ACTIVE
    assert keeper.epoch == 4
    assert keeper.deadline == pytest.approx(2.5)  # 0.0 + 3.0 - 0.5, not 0.9 + ...
    assert keeper.may_write(2.499)
    assert not keeper.may_write(2.5)  # checked at the call, without any tick


def test_renewals_every_interval_extend_from_when_they_were_sent() -> None:
    keeper = _active()
    assert keeper.tick(0.99) == []
    assert keeper.tick(1.0) == [Renew(4)]
    assert keeper.tick(1.1) == []  # in flight
    assert keeper.on_renew(1.4, _lease()) == []
    assert keeper.deadline == pytest.approx(3.5)  # 1.0 + 2.5, not 1.4 + 2.5
    assert keeper.tick(1.99) == []
    assert keeper.tick(2.0) == [Renew(4)]


def test_arbiter_errors_never_extend_leadership() -> None:
    keeper = _active()
    now, demoted_at, renew_attempts = 1.0, None, 0
    while demoted_at is None:
        assert now < 5.0, "never demoted"
        for action in keeper.tick(now):
            if isinstance(action, Renew):
                renew_attempts += 1
                assert keeper.on_error(now, "arbiter unreachable") == []
            elif isinstance(action, Demote):
                demoted_at = now
        now = round(now + 0.05, 3)
    assert demoted_at == pytest.approx(2.5)  # the deadline of the last successful renewal
    assert renew_attempts >= 4  # retried soon, not once per interval
    assert keeper.role is Role.PASSIVE
    assert not keeper.may_write(demoted_at)


def test_a_renewal_still_in_flight_does_not_delay_the_demotion() -> None:
    keeper = _active()
    assert keeper.tick(1.0) == [Renew(4)]
    assert keeper.tick(2.49) == []
    actions = keeper.tick(2.5)
    assert len(actions) == 1
    assert isinstance(actions[0], Demote)
    # The renewal comes back granted after all: the lease nobody uses is given back.
    assert keeper.on_renew(2.6, _lease()) == [Release(4)]
    assert keeper.role is Role.PASSIVE


def test_a_refused_renewal_demotes_at_once() -> None:
    keeper = _active()
    keeper.tick(1.0)
    actions = keeper.on_renew(1.1, None)
    assert len(actions) == 1
    assert isinstance(actions[0], Demote)
    assert "lost" in actions[0].reason
    assert keeper.role is Role.PASSIVE
    assert keeper.tick(1.1) == [TryAcquire()]


def test_a_renewal_of_another_epoch_counts_as_lost() -> None:
    keeper = _active()
    keeper.tick(1.0)
    actions = keeper.on_renew(1.1, _lease(epoch=5))
    assert [type(a) for a in actions] == [Demote]


def test_a_switchover_demotes_first_then_releases() -> None:
    keeper = _active()
    keeper.tick(1.0)
    pending = _lease(switchover_from="a", switchover_to="b", switchover_requested_at_ms=900)
    actions = keeper.on_renew(1.1, pending)
    assert [type(a) for a in actions] == [Demote, Release]
    assert isinstance(actions[0], Demote)
    assert "switchover to b" in actions[0].reason
    assert actions[1] == Release(4)
    assert not keeper.may_write(1.1)


def test_an_acquisition_answered_too_late_is_given_back() -> None:
    keeper = LeaseKeeper("a", "d", TIMING, now=0.0)
    keeper.tick(0.0)
    assert keeper.on_acquire(2.5, _lease(epoch=7)) == [Release(7)]
    assert keeper.role is Role.PASSIVE


def test_a_renewal_answered_too_late_demotes_and_releases() -> None:
    keeper = _active()
    keeper.tick(1.0)
    actions = keeper.on_renew(3.5, _lease())  # before any tick noticed the deadline
    assert [type(a) for a in actions] == [Demote, Release]


def test_stop_demotes_and_releases_then_nothing_more() -> None:
    keeper = _active()
    actions = keeper.stop(0.5)
    assert [type(a) for a in actions] == [Demote, Release]
    assert keeper.tick(5.0) == []
    assert keeper.due_at() is None
    passive = LeaseKeeper("b", "d", TIMING, now=0.0)
    assert passive.stop(0.0) == []


def test_an_acquisition_granted_while_stopping_is_released() -> None:
    keeper = LeaseKeeper("a", "d", TIMING, now=0.0)
    keeper.tick(0.0)
    assert keeper.stop(0.1) == []
    assert keeper.on_acquire(0.2, _lease(epoch=2)) == [Release(2)]


def test_answers_without_a_question_are_a_bug() -> None:
    keeper = LeaseKeeper("a", "d", TIMING, now=0.0)
    with pytest.raises(RuntimeError):
        keeper.on_renew(0.0, None)
    with pytest.raises(RuntimeError):
        keeper.on_error(0.0, "x")


def test_timings_are_checked() -> None:
    with pytest.raises(ValueError, match="margin"):
        LeaseTiming(ttl_ms=1_000, renew_interval_ms=100, demote_margin_ms=1_000)
    with pytest.raises(ValueError, match="renew interval"):
        LeaseTiming(ttl_ms=3_000, renew_interval_ms=2_600, demote_margin_ms=500)
