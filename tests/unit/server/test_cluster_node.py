"""Two ``MesServer`` nodes of one cluster in this process: the in-memory broker, one SQLite file
(historian and arbiter), short lease timings. The real-process failover tests are in
tests/integration/test_cluster_*.py; these check the wiring quickly and deterministically:
roles, the passive spool and its trimming, the gates on commands, tag writes and API writes, a
switchover's order of events, and the single-node default untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _cluster_rig import HOST_ID, PASSWORD, TAG, Edge, Rig
from fastapi.testclient import TestClient

from andon.server.cluster_errors import NotLeaderTagWriteError
from andon.server.mes_server import MesServer
from andon.settings import ServerSettings
from andon.sparkplug.codec import decode_state
from andon.testing.memory_broker import InMemoryBroker
from andon.testing.processes import wait_until


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)
    try:
        yield made
    finally:
        made.close()


def test_the_preferred_node_leads_and_the_other_stands_by_hot(rig: Rig) -> None:
    a, b = rig.start("a"), rig.start("b")
    rig.wait_role("a", "active")
    assert rig.role("b") == "passive"
    assert a.cluster is not None
    # Each node's own session is a secondary host named after the node; the domain's primary
    # host STATE is online (retained) from the leader.
    assert (a.session.host_id, b.session.host_id) == ("a", "b")
    state = decode_state(rig.broker.retained[f"spBv1.0/STATE/{HOST_ID}"])
    assert state.online

    edge = Edge(rig.broker)
    edge.birth()
    edge.send(50)
    wait_until(lambda: len(rig.stored()) == 51, 10, lambda: f"stored {len(rig.stored())}")
    # The passive node has the live value too, and holds every sample in its spool.
    wait_until(lambda: b.live_tags.get(TAG) is not None, 5, "passive node has no live value")
    assert b.historian.stats().committed_total == 0
    assert b.historian.stats().spool_samples == 51


def test_the_passive_spool_is_trimmed_against_the_leaders_watermark(rig: Rig) -> None:
    rig.start("a", passive_spool_margin_ms=1)
    b = rig.start("b", passive_spool_margin_ms=1)
    rig.wait_role("a", "active")
    edge = Edge(rig.broker)
    edge.birth()
    edge.send(20)
    wait_until(lambda: len(rig.stored()) == 21, 10, "the leader did not store the samples")
    wait_until(
        lambda: b.historian.stats().spool_samples == 0,
        10,
        lambda: f"passive spool still holds {b.historian.stats().spool_samples}",
    )
    status = b.cluster.status() if b.cluster else {}
    domain = status["domains"][0]
    assert domain["role"] == "passive"
    assert domain["holder"] == "a"
    assert domain["watermark_ms"] is not None
    assert domain["spool_samples"] == 0


def test_a_switchover_hands_over_in_order_and_loses_nothing(rig: Rig) -> None:
    a, b = rig.start("a"), rig.start("b")
    rig.wait_role("a", "active")
    assert a.cluster is not None
    edge = Edge(rig.broker)
    edge.birth()
    edge.send(30)
    wait_until(lambda: len(rig.stored()) == 31, 10, "the leader did not store the samples")
    before = {lease.domain: lease for lease in a.cluster.arbiter.leases()}["plant"]
    rig.broker.published.clear()
    a.cluster.arbiter.request_switchover("plant", "b", 1500)
    edge.send(30)  # during the hand-over
    rig.wait_role("b", "active")
    edge.send(30)
    after = {lease.domain: lease for lease in a.cluster.arbiter.leases()}["plant"]
    assert (after.node, after.epoch) == ("b", before.epoch + 1)
    assert rig.role("a") == "passive"
    states = [
        decode_state(payload).online
        for topic, payload, _, _ in rig.broker.published
        if topic == f"spBv1.0/STATE/{HOST_ID}"
    ]
    assert states[:2] == [False, True]  # the old leader's STATE offline comes first
    wait_until(lambda: len(rig.stored()) == 91, 10, lambda: f"stored {len(rig.stored())} of 91")
    assert rig.stored() == sorted(set(rig.stored()))
    a_since = a.health()["cluster"]["domains"]["plant"]["since_ms"]
    b_since = b.health()["cluster"]["domains"]["plant"]["since_ms"]
    assert a_since <= b_since  # a demoted before b became active: no overlap


def test_a_passive_node_sends_no_command_and_refuses_writes(rig: Rig) -> None:
    rig.start("a")
    b = rig.start("b")
    rig.wait_role("a", "active")
    edge = Edge(rig.broker)
    edge.birth()
    edge.send(3)
    wait_until(lambda: b.live_tags.get(TAG) is not None, 5, "passive node has no live value")
    assert b.cluster is not None
    cluster = b.cluster
    wait_until(lambda: cluster.view.holder("plant") == "a", 5, "b never read a's lease")
    with pytest.raises(NotLeaderTagWriteError, match="writes go to the active node, a at http"):
        b.write_tag(TAG, 5.0)
    # Data with a sequence gap: the leader asks for a rebirth, the passive node does not.
    rig.broker.published.clear()
    edge.session._seq = (edge.session._seq + 3) % 256  # skip three messages
    edge.send(1)
    ncmd = "spBv1.0/Plant/NCMD/Edge1"
    wait_until(lambda: any(t == ncmd for t, *_ in rig.broker.published), 10, "no rebirth requested")
    assert [t for t, *_ in rig.broker.published if t == ncmd] == [ncmd]  # one, from a
    passive = {n.edge_node_id: n for n in b.edges.nodes()}
    assert passive["Edge1"].online  # the passive node keeps using the edge's data

    client = TestClient(b.api)
    token = client.post(
        "/api/v1/auth/token", json={"username": "admin", "password": PASSWORD}
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    answer = client.post(
        "/api/v1/tags/write", json={"path": TAG, "value": 1.0, "comment": "x"}, headers=headers
    )
    assert answer.status_code == 409
    assert "node b is passive (hot standby) for domain plant" in answer.json()["detail"]
    answer = client.post(
        "/api/v1/users",
        json={"username": "carol", "password": "another-pass-123", "role": "operator"},
        headers=headers,
    )
    assert answer.status_code == 409
    assert client.post("/api/v1/users", json={}).status_code == 401  # no login: no topology
    view = client.get("/api/v1/cluster", headers=headers).json()
    assert view["clustered"]
    assert view["node"] == "b"
    assert [d["role"] for d in view["domains"]] == ["passive"]
    health = client.get("/api/v1/health").json()
    assert health["components"]["cluster"]["roles"] == {"plant": "passive"}


def test_without_domains_the_server_is_a_single_node(tmp_path: Path) -> None:
    broker = InMemoryBroker()
    settings = ServerSettings(
        host_id="single",
        database_url=f"sqlite:///{tmp_path / 'andon.db'}",
        historian_spool_path=tmp_path / "spool.db",
    )
    server = MesServer(
        settings,
        client_factory=lambda endpoint, **kw: broker.client(endpoint.client_id, **kw),
        serve_http=False,
    )
    server.start()
    try:
        assert server.cluster is None
        assert server.session.host_id == "single"
        assert "cluster" not in server.health()
        assert server.host.wait_online(5)
        assert "spBv1.0/STATE/single" in broker.retained
    finally:
        server.stop()


def test_a_separate_arbiter_database_is_refused_at_start(tmp_path: Path) -> None:
    settings = ServerSettings(
        host_id=HOST_ID,
        database_url=f"sqlite:///{tmp_path / 'andon.db'}",
        historian_spool_path=tmp_path / "spool.db",
        cluster={
            "node_id": "a",
            "arbiter_url": f"sqlite:///{tmp_path / 'leases.db'}",
            "domains": [{"name": "plant", "candidates": [{"node": "a"}]}],
        },
    )
    with pytest.raises(ValueError, match=r"cluster\.arbiter_url must be the historian database"):
        MesServer(settings, serve_http=False)
