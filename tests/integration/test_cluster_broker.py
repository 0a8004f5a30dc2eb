"""The broker side of a failover, on Mosquitto (checklist R-12, R-13).

R-12: every node uses the same client ID for a domain's primary-host session, so a new leader's
CONNECT displaces a stale leader's session. Recorded on Mosquitto 2.0.11 (the Debian package
this repository tests with): the broker disconnects the first session *and publishes its Will*
(the stale STATE offline, with the stale session's older timestamp), before the new session's
STATE birth. The stale node's client does not connect again: its Will factory refuses while
its lease is not valid.

R-13: that Will races the new leader's birth. Arriving after the birth it carries an older
timestamp and edges ignore it; arriving before it, edges walk away once (NDEATH, disconnect) and
come back at the birth.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import _cluster_fixtures
import pytest
from _sandf_rig import NODE, Recorder, WireObserver, edge_settings, start_edge, wait_for

from andon.mqtt.interface import MqttEndpoint
from andon.mqtt.paho_client import PahoBrokerClient
from andon.server.cluster_primary import PrimaryHost, primary_client_id
from andon.sparkplug.topic import MessageType
from andon.testing.brokers import MosquittoBroker

pytestmark = [pytest.mark.integration, pytest.mark.mosquitto]

# The shared fixtures, under the names the tests ask for.
mosquitto = _cluster_fixtures.mosquitto

HOST = "race-host"


@pytest.fixture
def observer(mosquitto: MosquittoBroker) -> Iterator[WireObserver]:
    watcher = WireObserver(mosquitto.port, "broker").start()
    try:
        yield watcher
    finally:
        watcher.stop()


def _primary(port: int, leads: dict[str, bool], name: str) -> PrimaryHost:
    endpoint = MqttEndpoint(
        port=port,
        client_id=primary_client_id(HOST),
        keepalive_s=5,
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
    )
    return PrimaryHost(HOST, [endpoint], PahoBrokerClient, may_lead=lambda: leads[name])


def _states(observer: WireObserver, since: int = 0) -> list[tuple[bool, int]]:
    return [m.state for m in observer.messages(since=since) if m.host_id == HOST and m.state]


def test_a_new_leaders_primary_session_displaces_the_stale_one(
    mosquitto: MosquittoBroker, observer: WireObserver
) -> None:
    leads = {"old": True, "new": False}
    old, new = _primary(mosquitto.port, leads, "old"), _primary(mosquitto.port, leads, "new")
    try:
        old.open()
        wait_for(lambda: old.online, "the first primary session never came online")
        (online, stale_ts), *_ = _states(observer) or [(False, 0)]
        assert online
        # The old leader is frozen past its lease (it still thinks it leads nothing now); a
        # new leader takes over with the same client ID.
        leads["old"], leads["new"] = False, True
        new.open()
        wait_for(lambda: new.online, "the new primary session never came online")
        wait_for(lambda: not old.online, "the broker did not disconnect the stale session")
        observer.sentinel()
        states = _states(observer)
        new_ts = states[-1][1]
        assert states[-1] == (True, new_ts)
        assert new_ts > stale_ts
        will_published = (False, stale_ts) in states
        print(f"Mosquitto published the displaced session's Will: {will_published}; {states}")
        assert will_published  # Mosquitto 2.0 does (recorded in the module docstring)
        assert states.index((False, stale_ts)) < states.index((True, new_ts))
        # The stale client tries again (its session ended) but sends no CONNECT: the broker
        # keeps the new leader's session, whose birth stays the retained STATE.
        mark = observer.sentinel().index
        wait_for(
            lambda: old._links == [] or all(not link.client.connected for link in old._links),
            "the stale client reconnected",
        )
        assert new.online
        observer.sentinel()
        assert _states(observer, since=mark) == []
    finally:
        old.close(1.0)
        new.close(1.0)


def test_a_late_will_is_ignored_and_an_early_one_costs_one_walk_away(
    tmp_path: Path, mosquitto: MosquittoBroker, observer: WireObserver
) -> None:
    now = time.time_ns() // 1_000_000
    t_old, t_new, t_next = now - 10_000, now, now + 10_000
    observer.publish_state(HOST, online=True, ts_ms=t_old)
    agent = start_edge(
        edge_settings(tmp_path, mosquitto.port, primary_host_id=HOST, simulator={"machines": 2}),
        Recorder(),
    )
    try:
        observer.wait_message(MessageType.NBIRTH)
        # The Will of the old session arrives after the new leader's birth: older, ignored.
        mark = observer.count()
        observer.publish_state(HOST, online=True, ts_ms=t_new)
        observer.wait_message(MessageType.NBIRTH, since=mark)  # a new host session: re-birth
        observer.publish_state(HOST, online=False, ts_ms=t_old)
        mark = observer.count()
        observer.sentinel()
        wait_for(lambda: agent.status().get("connected"), "the edge left over a stale Will")
        assert observer.messages(NODE, [MessageType.NDEATH], since=mark) == []

        # The Will arrives before the next leader's birth: the edge walks away once...
        mark = observer.count()
        observer.publish_state(HOST, online=False, ts_ms=t_new)
        observer.wait_message(MessageType.NDEATH, since=mark)
        # ... and comes back at the birth, with its store-and-forward backlog.
        observer.publish_state(HOST, online=True, ts_ms=t_next)
        birth = observer.wait_message(MessageType.NBIRTH, since=mark)
        observer.sentinel()
        assert len(observer.messages(NODE, [MessageType.NDEATH], since=mark)) == 1
        online_at = next(
            m.index for m in observer.messages(since=mark) if m.state == (True, t_next)
        )
        assert birth.index > online_at
    finally:
        agent.stop()
