"""The arbiter's pure acquisition rule across configurations: during a migration the old nodes
run the old candidate list while the new ones run the new one, and a pending switchover to a
new node must still be honoured by the old ones."""

from __future__ import annotations

from andon.cluster.arbiter import acquisition_refusal
from andon.cluster.model import Lease

NOW, TTL = 10_000, 1_500
ALIVE = {"a": NOW, "b": NOW, "c": NOW}


def _released_for(to_node: str | None) -> Lease:
    """a held the lease, a switchover was asked, and a released it (expired now)."""
    return Lease("d", "a", 1, 0, NOW - 100, NOW, switchover_from="a", switchover_to=to_node,
                 switchover_requested_at_ms=NOW - 200)  # fmt: skip


def _refusal(lease: Lease, node: str, preference: list[str], alive: dict[str, int]) -> str | None:
    return acquisition_refusal(
        lease=lease, node=node, now_ms=NOW, ttl_ms=TTL, preference=preference, last_seen=alive
    )


def test_a_node_that_does_not_know_the_target_leaves_it_the_lease() -> None:
    lease = _released_for("c")
    # b runs the old configuration (a, b): c is not among its candidates, yet c was named.
    assert _refusal(lease, "b", ["a", "b"], ALIVE) == "a switchover to c is pending"
    assert _refusal(lease, "c", ["a", "b", "c"], ALIVE) is None


def test_a_dead_target_lets_the_configured_order_decide() -> None:
    lease = _released_for("c")
    alive = {"a": NOW, "b": NOW, "c": NOW - TTL}  # c stopped heartbeating
    assert _refusal(lease, "b", ["a", "b"], alive) is None
    assert _refusal(lease, "a", ["a", "b"], alive) == "b is preferred and alive"


def test_a_switchover_to_no_one_in_particular_keeps_the_configured_order() -> None:
    lease = _released_for(None)
    assert _refusal(lease, "b", ["a", "b"], ALIVE) is None
    assert _refusal(lease, "a", ["a", "b"], ALIVE) == "b is preferred and alive"
