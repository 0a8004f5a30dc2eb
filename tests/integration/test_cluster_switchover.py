"""Manual switchover and the commands of a redundant pair, real processes (checklist R-10, R-14,
R-15). Nodes on one host: one SQLite file holds the history and the leases. Lease ttl 1.5 s."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator

import _cluster_fixtures
import pytest
from _cluster_fixtures import SIMULATOR
from _sandf_rig import WireMessage, WireObserver

from andon.sparkplug.topic import MessageType
from andon.testing.brokers import MosquittoBroker
from andon.testing.cluster_rig import HOST_ID, ClusterRig, EdgeSpec
from andon.testing.processes import andon_executable, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.mosquitto]

# The shared fixtures, under the names the tests ask for.
make_cluster = _cluster_fixtures.make_cluster
mosquitto = _cluster_fixtures.mosquitto

COMMANDS = (MessageType.NCMD, MessageType.DCMD)


@pytest.fixture
def observer(mosquitto: MosquittoBroker) -> Iterator[WireObserver]:
    watcher = WireObserver(mosquitto.port, "cluster").start()
    try:
        yield watcher
    finally:
        watcher.stop()


def _births(messages: list[WireMessage], edge: str) -> list[WireMessage]:
    return [m for m in messages if m.kind is MessageType.NBIRTH and m.edge_node_id == edge]


def test_a_manual_switchover_hands_over_with_no_overlap_and_the_edges_follow(
    make_cluster: Callable[..., ClusterRig], observer: WireObserver
) -> None:
    """R-10: ``andon cluster switchover``; zero overlap, epoch + 1, STATE offline -> online."""
    rig = make_cluster(nodes=["a", "b"], edges=[EdgeSpec(simulator=SIMULATOR)])
    rig.start_nodes()
    assert rig.wait_active() == "a", rig.describe()
    rig.start_edges()
    rig.wait_recorded(300, timeout=60)
    wait_until(lambda: _births(observer.messages(), "Edge1"), 10, "the edge never birthed")
    mark = observer.sentinel().index

    done = subprocess.run(
        [andon_executable(), "cluster", "switchover", "plant", "--to", "b",
         "--config", str(rig.config_path)],
        capture_output=True, text=True, timeout=60, check=False, env=rig.base_env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "plant: a (epoch 1) -> b (epoch 2)"
    wait_until(lambda: rig.node("b").role("plant") == "active", 20, "b never became active")
    lease = rig.lease()
    assert lease is not None
    assert (lease.node, lease.epoch) == ("b", 2)
    # Zero overlap (this host's clock on both sides): a stopped acting before b's lease began.
    demoted_ms = rig.node("a").role_since_ms("plant")
    assert rig.node("a").role("plant") == "passive"
    assert demoted_ms is not None
    assert demoted_ms <= lease.acquired_at_ms

    # The edge saw the primary host go offline, then online with a newer timestamp, and
    # re-birthed after that.
    wait_until(
        lambda: _births(observer.messages(since=mark), "Edge1"), 20, "the edge never re-birthed"
    )
    after = observer.messages(since=mark)
    states = [(m.index, m.state) for m in after if m.host_id == HOST_ID and m.state]
    assert [online for _, (online, _ts) in states][:2] == [False, True], states
    offline_ts, online_ts = states[0][1][1], states[1][1][1]
    assert online_ts > offline_ts
    first_birth = _births(after, "Edge1")[0]
    assert first_birth.index > states[1][0]

    rig.wait_recorded(rig.recorded_count() + 200, timeout=60)
    assert rig.stop_edges() == [0], rig.describe()
    result = rig.wait_for_history(timeout=60)
    print(f"switchover: {result.summary()}")
    assert result.exact, f"{result.summary()}\n{rig.describe()}"


def test_a_passive_node_never_commands_and_a_promotion_asks_for_rebirths_at_a_bounded_rate(
    make_cluster: Callable[..., ClusterRig], observer: WireObserver
) -> None:
    """R-14 and R-15, with edges that wait for no primary host (they never re-birth by
    themselves, so a new leader asks them to: one request each, at most 2 a second)."""
    small = {**SIMULATOR, "machines": 2}
    edges = [EdgeSpec(f"Edge{i}", primary_host_id=None, simulator=small) for i in (1, 2, 3)]
    rig = make_cluster(
        nodes=["a", "b"],
        edges=edges,
        cluster_extra={"promotion_rebirths_per_s": 2.0, "promotion_rebirth_delay_ms": 500},
    )
    rig.start_nodes()
    assert rig.wait_active() == "a", rig.describe()
    rig.start_edges()
    rig.wait_recorded(300, timeout=60)
    # the passive node restarts while the edges run. Its new session sees their data
    # before any birth, which would ask for a rebirth; it asks for none (nor does the leader,
    # whose session is unchanged). A write to equipment through it is refused.
    mark = observer.sentinel().index
    rig.stop_node("b")
    rig.start_nodes(["b"])
    wait_until(
        lambda: (rig.node("b").health() or {}).get("components", {}).get("mqtt", {}).get("ok"),
        20,
        "b's session never came online",
    )
    rig.wait_recorded(rig.recorded_count() + 200, timeout=60)
    status, body = rig.node("b").post(
        "/api/v1/tags/write", {"path": "Plant1/Edge1/M0001/Speed", "value": 1.0, "comment": "t"}
    )
    assert status == 409, body
    assert "writes go to the active node, a at http://127.0.0.1:" in body
    observer.sentinel()
    assert [m.topic for m in observer.messages(since=mark) if m.kind in COMMANDS] == []

    # kill the leader; the new one asks each edge once, no faster than 2 a second.
    mark = observer.sentinel().index
    rig.kill("a")
    wait_until(lambda: rig.node("b").role("plant") == "active", 20, "b never took over")
    wait_until(
        lambda: len([m for m in observer.messages(since=mark) if m.kind in COMMANDS]) >= 3,
        20,
        "the new leader did not ask the edges for rebirths",
    )
    rig.wait_recorded(rig.recorded_count() + 200, timeout=60)
    observer.sentinel()
    requests = [m for m in observer.messages(since=mark) if m.kind in COMMANDS]
    assert sorted(m.edge_node_id or "" for m in requests) == ["Edge1", "Edge2", "Edge3"]
    since_first = [m.at - requests[0].at for m in requests]
    print(f"rebirth requests {[m.edge_node_id for m in requests]} at +{since_first} s")
    for k, elapsed in enumerate(since_first):
        assert elapsed >= k / 2.0 - 0.1  # the k-th request no sooner than k / rate

    assert rig.stop_edges() == [0, 0, 0], rig.describe()
    result = rig.wait_for_history(timeout=60)
    print(f"promotion rebirths: {result.summary()}")
    assert result.exact, f"{result.summary()}\n{rig.describe()}"
