"""Checklist B, edge lines E-05, E-06, E-07, E-09 (SPARKPLUG.md §5, §9) at the wire level.

Two real Mosquitto brokers, the real ``EdgeAgent`` (``mqtt`` = broker A, ``fallback_brokers`` =
[broker B]) reaching each broker through a ``TcpProxy`` that logs when the edge's TCP connections
open and close, and a raw observer on ``spBv1.0/#`` on each broker. STATE messages are published
by hand (retained), so their timestamps are under the test's control.

Negative checks ("this did not happen") end with an ordering sentinel: a later message whose
effect is visible (a rebirth NCMD, or the observer's own marker) proves the edge had already
handled the earlier one.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _sandf_rig import (
    EDGE_CLIENT_ID,
    HOST_ID,
    NODE,
    Recorder,
    WireObserver,
    edge_settings,
    now_ms,
    rebirth_ncmd,
    start_edge,
    wait_for,
)

from andon.sparkplug.topic import MessageType
from andon.testing.brokers import MosquittoBroker
from andon.testing.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.mosquitto]

_DATA = (MessageType.NBIRTH, MessageType.DBIRTH, MessageType.DDATA, MessageType.NDATA)


class ConnectionLog:
    """Open TCP connections of the edge per broker, over time (both proxies share it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[tuple[int, str, int]] = []
        self.open = 0
        self.max_open = 0

    def change(self, name: str, delta: int) -> None:
        with self._lock:
            self.open += delta
            self.max_open = max(self.max_open, self.open)
            self.events.append((time.monotonic_ns(), name, delta))


class LoggingProxy(TcpProxy):
    def __init__(self, name: str, log: ConnectionLog, target_port: int) -> None:
        super().__init__("127.0.0.1", target_port)
        self.name = name
        self.log = log

    async def _handle(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        self.log.change(self.name, +1)
        try:
            await super()._handle(client_reader, client)
        finally:
            self.log.change(self.name, -1)


class Site:
    def __init__(self, tmp_path: Path, binary: str) -> None:
        self.a = MosquittoBroker(data_dir=tmp_path / "broker-a", binary=binary)
        self.b = MosquittoBroker(data_dir=tmp_path / "broker-b", binary=binary)
        self.a.start()
        self.b.start()
        self.log = ConnectionLog()
        self.proxy_a = LoggingProxy("A", self.log, self.a.port).start()
        self.proxy_b = LoggingProxy("B", self.log, self.b.port).start()
        self.obs_a = WireObserver(self.a.port, "observer-A").start()
        self.obs_b = WireObserver(self.b.port, "observer-B").start()

    def close(self) -> None:
        for o in (self.obs_a, self.obs_b):
            o.stop()
        for p in (self.proxy_a, self.proxy_b):
            p.stop()
        for b in (self.a, self.b):
            b.stop()


@pytest.fixture
def site(tmp_path: Path, mosquitto_binary: str) -> Iterator[Site]:
    s = Site(tmp_path, mosquitto_binary)
    try:
        yield s
    finally:
        s.close()


def test_e05_e06_e07_primary_host_state_rules_and_one_broker_at_a_time(
    tmp_path: Path, site: Site
) -> None:
    recorder = Recorder()
    agent = start_edge(
        edge_settings(
            tmp_path,
            site.proxy_a.port,
            primary_host_id=HOST_ID,
            fallback_ports=[site.proxy_b.port],
        ),
        recorder,
    )
    a, b = site.obs_a, site.obs_b
    try:
        # E-05: connected, subscribed, but no STATE yet -> no birth; data goes to the spool.
        wait_for(lambda: agent.client.connected, "the edge never connected to broker A")
        held = agent.spool.stats().records
        wait_for(lambda: agent.spool.stats().records >= held + 10, "the edge is not spooling")
        # A STATE for another host, and our host offline: still no birth.
        t1 = now_ms()
        a.publish_state("some-other-host", True, t1)
        a.publish_state(HOST_ID, False, t1 - 10)
        wait_for(lambda: agent.spool.stats().records >= held + 20, "the edge is not spooling")
        mark = a.count()
        a.publish_state(HOST_ID, True, t1)
        birth = a.wait_message(MessageType.NBIRTH)
        assert birth.index > mark, "a birth came before the valid STATE online"
        assert len(a.messages(NODE, [MessageType.NBIRTH])) == 1
        born_bd = birth.bd_seq

        # E-06: a stale offline STATE (older timestamp) is ignored: a rebirth request published
        # after it is answered on the same connection (same bdSeq) with no NDEATH before it.
        mark = a.count()
        a.publish_state(HOST_ID, False, t1 - 1)
        a.publish(*rebirth_ncmd())
        rebirth = a.wait_message(MessageType.NBIRTH, since=mark)
        assert rebirth.bd_seq == born_bd
        assert not a.messages(NODE, [MessageType.NDEATH], since=mark), "stale offline obeyed"

        # E-06: a valid offline STATE (timestamp >= last online) -> NDEATH (current bdSeq),
        # disconnect, next broker (B). B holds an older online STATE (t1 - 5 < t2): E-05 says
        # the edge must not birth on it.
        b.publish_state(HOST_ID, True, t1 - 5)
        t2 = t1 + 1000
        mark = a.count()
        a.publish_state(HOST_ID, False, t2)
        death = a.wait_message(MessageType.NDEATH, since=mark)
        assert death.bd_seq == born_bd
        wait_for(lambda: agent.client.endpoint.port == site.proxy_b.port, "no switch to B")
        wait_for(lambda: agent.client.connected, "the edge never connected to broker B")
        held = agent.spool.stats().records
        wait_for(lambda: agent.spool.stats().records >= held + 10, "the edge is not spooling")
        assert not b.messages(NODE, [MessageType.NBIRTH]), "birth on an older online STATE"
        mark_b = b.count()
        t3 = t2 + 1000
        b.publish_state(HOST_ID, True, t3)
        birth_b = b.wait_message(MessageType.NBIRTH, since=mark_b)
        assert birth_b.bd_seq == (born_bd or 0) + 1  # a new CONNECT, a new Will
        after_death = a.messages(NODE, _DATA, since=death.index)
        a.sentinel()
        assert not after_death, "the edge kept publishing on A after its NDEATH"

        # E-07: never connected to two brokers at once (TCP level, both proxies).
        assert site.log.max_open == 1, site.log.events
        print(
            f"E-05/06/07: no birth before STATE online (2 foreign/offline STATEs ignored);"
            f" stale offline ignored (rebirth kept bdSeq {born_bd}); valid offline -> NDEATH"
            f" bdSeq {death.bd_seq} -> broker B, older online ignored, birth on B with bdSeq"
            f" {birth_b.bd_seq}; TCP connection events {len(site.log.events)}, at most"
            f" {site.log.max_open} open at once"
        )
    finally:
        agent.stop()


def test_e07_broker_failover_never_two_connections(tmp_path: Path, site: Site) -> None:
    """Broker A dies: after three failed attempts the edge moves to B, never holding both."""
    recorder = Recorder()
    agent = start_edge(
        edge_settings(tmp_path, site.proxy_a.port, fallback_ports=[site.proxy_b.port]),
        recorder,
    )
    try:
        site.obs_a.wait_message(MessageType.NBIRTH)
        site.a.stop()
        site.obs_b.wait_message(MessageType.NBIRTH)
        site.a.start()
        site.obs_a.restart()
        agent.client.next_server()  # and back to A
        site.obs_a.wait_message(MessageType.NBIRTH)
        assert site.log.max_open == 1, site.log.events
        print(
            f"E-07: A -> B (broker down) -> A (next_server); {len(site.log.events)} TCP"
            f" events, never more than {site.log.max_open} connection open"
        )
    finally:
        agent.stop()


def test_e09_intentional_stop_publishes_ndeath_then_disconnect_no_will(
    tmp_path: Path, site: Site
) -> None:
    recorder = Recorder()
    agent = start_edge(edge_settings(tmp_path, site.a.port), recorder)
    obs = site.obs_a
    birth = obs.wait_message(MessageType.NBIRTH)
    wait_for(lambda: obs.messages(NODE, [MessageType.DDATA]), "no data")
    agent.stop()
    death = obs.wait_message(MessageType.NDEATH, since=birth.index)
    assert death.bd_seq == birth.bd_seq
    assert death.payload is not None
    assert death.payload.seq is None, "NDEATH carries no seq"
    obs.sentinel()
    deaths = obs.messages(NODE, [MessageType.NDEATH], since=birth.index)
    assert len(deaths) == 1, f"the Will was delivered too: {len(deaths)} NDEATHs"
    log_text = site.a.log_path.read_text(errors="replace")
    assert f"Client {EDGE_CLIENT_ID} disconnected." in log_text, "no DISCONNECT packet seen"
    print(
        f"E-09: NDEATH bdSeq {death.bd_seq} (= NBIRTH's), then DISCONNECT (broker log); 1"
        f" NDEATH before the sentinel, no Will"
    )
