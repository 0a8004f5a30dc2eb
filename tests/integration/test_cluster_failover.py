"""Failover of a redundant pair, real processes (checklist R-03, R-08, R-09; issue 6).

Two ``andon server`` nodes share one configuration and one SQLite file (historian and arbiter:
nodes on one host), an ``andon edge`` with the simulator waits for the domain's primary host
and records every value it produces. Lease ttl 1.5 s, renewals every 0.5 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import _cluster_fixtures
import pytest
from _cluster_fixtures import SIMULATOR

from andon.testing.cluster_rig import ClusterRig, EdgeSpec

pytestmark = [pytest.mark.integration, pytest.mark.mosquitto]

# The shared fixtures, under the names the tests ask for.
make_cluster = _cluster_fixtures.make_cluster
mosquitto = _cluster_fixtures.mosquitto

TTL_MS, RENEW_MS = 1500, 500


def test_kill_9_of_the_active_node_fails_over_losing_and_duplicating_nothing(
    make_cluster: Callable[..., ClusterRig],
) -> None:
    rig = make_cluster(nodes=["a", "b"], edges=[EdgeSpec(simulator=SIMULATOR)])
    # a cold start of both nodes gives exactly one active node, the preferred one.
    rig.start_nodes()
    assert rig.wait_active() == "a", rig.describe()
    assert rig.roles() == {"a": "active", "b": "passive"}
    rig.start_edges()
    rig.wait_recorded(600, timeout=60)

    killed_ms = time.time_ns() // 1_000_000
    killed = time.monotonic()
    rig.kill("a")
    assert rig.wait_active(timeout=15) == "b", rig.describe()
    to_active_s = time.monotonic() - killed
    lease = rig.lease()
    assert lease is not None
    assert lease.node == "b"
    assert lease.epoch == 2
    # the standby took the lease within ttl + renew interval of the kill (the database's
    # clock and this one are the same host's).
    taken_after_ms = lease.acquired_at_ms - killed_ms
    print(f"lease taken {taken_after_ms} ms after the kill; active after {to_active_s:.2f} s")
    assert taken_after_ms <= TTL_MS + RENEW_MS + 250, rig.describe()

    produced = rig.recorded_count()
    rig.wait_recorded(produced + 400, timeout=60)  # the flow goes on through the new leader
    assert rig.stop_edges() == [0], rig.describe()
    result = rig.wait_for_history(timeout=60)
    print(f"kill -9 failover: {result.summary()}")
    assert result.exact, f"{result.summary()}\n{rig.describe()}"
