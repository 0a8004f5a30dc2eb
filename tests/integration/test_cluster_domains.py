"""Domains of control on three nodes, real processes (checklist R-17; issue 6: a 3-node group
with priorities, 2 domains on 3 nodes where losing one node moves only its domains).

Domain ``line1`` (edge Plant1/Edge1, primary host ``host-line1``) prefers n1, then n3, then
n2; domain ``line2`` (Plant1/Edge2, ``host-line2``) prefers n2, then n3, then n1. One SQLite
file holds the history and the leases. Every value both edges produce is counted at the end.
"""

from __future__ import annotations

from collections.abc import Callable

import _cluster_fixtures
import pytest

from andon.testing.cluster_rig import ClusterRig, EdgeSpec, domain_table
from andon.testing.processes import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.mosquitto, pytest.mark.slow]

# The shared fixtures, under the names the tests ask for.
make_cluster = _cluster_fixtures.make_cluster
mosquitto = _cluster_fixtures.mosquitto

SMALL = {"machines": 4, "tags_per_machine": 20, "time_scale": 30.0, "seed": 3}


def _leases(rig: ClusterRig) -> dict[str, tuple[str | None, int]]:
    now = rig.arbiter.now_ms()
    return {x.domain: (x.holder_at(now), x.epoch) for x in rig.arbiter.leases()}


def test_losing_a_node_moves_only_its_domains_down_the_priorities(
    make_cluster: Callable[..., ClusterRig],
) -> None:
    rig = make_cluster(
        nodes=["n1", "n2", "n3"],
        domains=[
            domain_table(
                "line1",
                ["n1", "n3", "n2"],
                assets=["Plant/Line1"],
                edges=["Plant1/Edge1"],
                host_id="host-line1",
            ),
            domain_table(
                "line2",
                ["n2", "n3", "n1"],
                assets=["Plant/Line2"],
                edges=["Plant1/Edge2"],
                host_id="host-line2",
            ),
        ],
        edges=[
            EdgeSpec("Edge1", primary_host_id="host-line1", simulator=SMALL),
            EdgeSpec("Edge2", primary_host_id="host-line2", simulator={**SMALL, "seed": 4}),
        ],
    )
    rig.start_nodes()
    # A cold start: each domain led by its preferred node, exactly one leader each.
    assert rig.wait_active("line1") == "n1", rig.describe()
    assert rig.wait_active("line2") == "n2", rig.describe()
    assert _leases(rig) == {"line1": ("n1", 1), "line2": ("n2", 1)}
    rig.start_edges()
    rig.wait_recorded(400, timeout=60)

    # n1 fails: line1 moves to its next candidate, n3; line2 does not move (same epoch).
    rig.kill("n1")
    assert rig.wait_active("line1", timeout=20) == "n3", rig.describe()
    assert _leases(rig) == {"line1": ("n3", 2), "line2": ("n2", 1)}
    assert rig.node("n2").role("line2") == "active"
    rig.wait_recorded(rig.recorded_count() + 300, timeout=60)

    # n3 fails too: line1 goes to its last candidate, n2, which now leads both.
    rig.kill("n3")
    assert rig.wait_active("line1", timeout=20) == "n2", rig.describe()
    assert _leases(rig) == {"line1": ("n2", 3), "line2": ("n2", 1)}
    wait_until(
        lambda: (
            rig.node("n2").cluster_health() is not None and rig.node("n2").role("line2") == "active"
        ),
        10,
        "n2 lost line2",
    )
    rig.wait_recorded(rig.recorded_count() + 300, timeout=60)

    assert rig.stop_edges() == [0, 0], rig.describe()
    result = rig.wait_for_history(timeout=60)
    print(f"two domains, three nodes, two failures: {result.summary()}")
    assert result.exact, f"{result.summary()}\n{rig.describe()}"
