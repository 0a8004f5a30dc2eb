"""Groups of more than two nodes in this process (issue 6: a 3-node group with priorities, a cold
start of all nodes, a migration with 5 nodes), on the in-memory broker and one SQLite file. The
real-process version of the 3-node case is tests/integration/test_cluster_domains.py.

Two domains, each with its own edge: ``line1`` (edge Plant/Edge1) and ``line2`` (Plant/Edge2).
A ``LeaderWatch`` follows every node's roles throughout, so each test asserts that at no moment
two nodes led one domain and that each domain's epoch only grew; at the end every value each
edge sent is in the history exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _cluster_rig import Edge, Rig
from _cluster_watch import LeaderWatch

from andon.server.cluster_node import ClusterNode
from andon.testing.processes import wait_until

LINES = ("line1", "line2")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def watch() -> Iterator[LeaderWatch]:
    made = LeaderWatch()
    made.start()
    try:
        yield made
    finally:
        made.stop()


def _config(nodes: list[str], line1: list[str], line2: list[str]) -> dict[str, Any]:
    """The cluster settings every node of one configuration shares (candidates best first)."""

    def domain(name: str, edge: str, ranked: list[str]) -> dict[str, Any]:
        return {
            "name": name,
            "edges": [f"Plant/{edge}"],
            "host_id": f"host-{name}",
            "candidates": [{"node": n, "priority": i} for i, n in enumerate(ranked, 1)],
        }

    return {
        "nodes": nodes,
        "domains": [domain("line1", "Edge1", line1), domain("line2", "Edge2", line2)],
    }


def _start(rig: Rig, watch: LeaderWatch, node: str, config: dict[str, Any]) -> None:
    watch.add(node, rig.start(node, **config).cluster)


def _leaders(rig: Rig) -> dict[str, tuple[str | None, int]]:
    """Each domain's lease holder and epoch, from the arbiter."""
    arbiter = _cluster(rig, next(iter(rig.nodes))).arbiter
    now = arbiter.now_ms()
    return {x.domain: (x.holder_at(now), x.epoch) for x in arbiter.leases()}


def _cluster(rig: Rig, node: str) -> ClusterNode:
    cluster = rig.nodes[node].cluster
    assert cluster is not None
    return cluster


def _wait_passive_and_hot(rig: Rig, node: str, edges: list[Edge]) -> None:
    """``node`` has the edges' values and reads the leases (line1 led by a)."""
    server, cluster = rig.nodes[node], _cluster(rig, node)
    tags = [edge.tag for edge in edges]
    wait_until(
        lambda: all(server.live_tags.get(tag) is not None for tag in tags),
        5,
        f"{node} never saw the edges' values",
    )
    # The view is refreshed on the node's own upkeep cadence: allow for a loaded machine.
    wait_until(lambda: cluster.view.holder("line1") == "a", 20, f"{node} never read a's lease")
    assert rig.role(node, "line1") == rig.role(node, "line2") == "passive"


def _wait_leader(rig: Rig, domain: str, node: str) -> None:
    rig.wait_role(node, "active", domain=domain)
    wait_until(lambda: _leaders(rig)[domain][0] == node, 30, lambda: f"{domain}: {_leaders(rig)}")


def _edges(rig: Rig) -> list[Edge]:
    edges = [Edge(rig.broker, edge_node_id=name) for name in ("Edge1", "Edge2")]
    for edge in edges:
        edge.birth()
    return edges


def _send(edges: list[Edge], count: int) -> None:
    for edge in edges:
        edge.send(count)


def _assert_stored_once(rig: Rig, edges: list[Edge], born: list[int]) -> None:
    for edge, born_ts in zip(edges, born, strict=True):
        _assert_tag_stored_once(rig, edge.tag, [born_ts, *edge.sent])


def _assert_tag_stored_once(rig: Rig, tag: str, expected: list[int]) -> None:
    wait_until(
        lambda: len(rig.stored(tag)) >= len(expected),
        10,
        lambda: f"{tag}: stored {len(rig.stored(tag))} of {len(expected)}",
    )
    assert rig.stored(tag) == expected  # each value once, none missing


def test_three_nodes_start_cold_and_fail_over_down_their_priorities(
    rig: Rig, watch: LeaderWatch
) -> None:
    config = _config(["a", "b", "c"], line1=["a", "b", "c"], line2=["c", "b", "a"])
    for node in ("a", "b", "c"):  # a cold start: all within one ttl (the hold-off)
        _start(rig, watch, node, config)
    # Exactly one leader per domain, the preferred one, at the first epoch.
    _wait_leader(rig, "line1", "a")
    _wait_leader(rig, "line2", "c")
    assert _leaders(rig) == {"line1": ("a", 1), "line2": ("c", 1)}
    assert [rig.role(n, "line1") for n in "abc"] == ["active", "passive", "passive"]
    assert [rig.role(n, "line2") for n in "abc"] == ["passive", "passive", "active"]

    edges = _edges(rig)
    born = [edge.ts for edge in edges]
    _send(edges, 40)
    # a leaves: line1 goes to its second candidate b (not c); line2 stays where it is.
    rig.stop("a")
    _send(edges, 40)
    _wait_leader(rig, "line1", "b")
    assert _leaders(rig) == {"line1": ("b", 2), "line2": ("c", 1)}
    _send(edges, 40)
    # b leaves too: line1 goes to its last candidate, c, which now leads both.
    rig.stop("b")
    _send(edges, 40)
    _wait_leader(rig, "line1", "c")
    assert _leaders(rig) == {"line1": ("c", 3), "line2": ("c", 1)}
    _send(edges, 40)

    _assert_stored_once(rig, edges, born)
    assert watch.check("line1") == [("a", 1), ("b", 2), ("c", 3)]
    assert watch.check("line2") == [("c", 1)]


def test_a_migration_to_three_new_nodes_keeps_one_leader_and_every_value(
    rig: Rig, watch: LeaderWatch
) -> None:
    """A pair in service; three new nodes join with the pair's configuration plus themselves
    as candidates; a switchover moves each domain to new hardware; the old pair leaves."""
    old = _config(["a", "b"], line1=["a", "b"], line2=["b", "a"])
    new = _config(
        ["a", "b", "c", "d", "e"], line1=["a", "b", "c", "d", "e"], line2=["b", "a", "d", "c", "e"]
    )
    _start(rig, watch, "a", old)
    _start(rig, watch, "b", old)
    _wait_leader(rig, "line1", "a")
    _wait_leader(rig, "line2", "b")
    edges = _edges(rig)
    born = [edge.ts for edge in edges]
    _send(edges, 30)

    for node in ("c", "d", "e"):  # the new nodes join passive: the old leaders keep leading
        _start(rig, watch, node, new)
        _send(edges, 10)
    # They joined after the edges' births and, as secondary hosts, may not ask for new ones
    # the edges birth again, as a Sparkplug edge does for a (re)starting primary host.
    for edge in edges:
        edge.ts += 1
        edge.birth()
        edge.sent.append(edge.ts)  # the birth carries a value too
    for node in ("c", "d", "e"):
        _wait_passive_and_hot(rig, node, edges)
    assert _leaders(rig) == {"line1": ("a", 1), "line2": ("b", 1)}

    # Each domain moves to new hardware (asked through a new node: its configuration knows
    # the new candidates), while the edges keep sending.
    arbiter = _cluster(rig, "c").arbiter
    ttl = 1500
    arbiter.request_switchover("line1", "c", ttl)
    _send(edges, 20)
    _wait_leader(rig, "line1", "c")
    assert _leaders(rig) == {"line1": ("c", 2), "line2": ("b", 1)}
    _send(edges, 20)
    arbiter.request_switchover("line2", "d", ttl)
    _send(edges, 20)
    _wait_leader(rig, "line2", "d")
    assert _leaders(rig) == {"line1": ("c", 2), "line2": ("d", 2)}
    _send(edges, 20)

    # The old pair leaves; nothing moves (it led nothing any more).
    rig.stop("a")
    _send(edges, 20)
    rig.stop("b")
    _send(edges, 20)
    assert _leaders(rig) == {"line1": ("c", 2), "line2": ("d", 2)}
    assert [rig.role(n, "line1") for n in "cde"] == ["active", "passive", "passive"]
    assert [rig.role(n, "line2") for n in "cde"] == ["passive", "active", "passive"]

    _assert_stored_once(rig, edges, born)
    assert watch.check("line1") == [("a", 1), ("c", 2)]
    assert watch.check("line2") == [("b", 1), ("d", 2)]
