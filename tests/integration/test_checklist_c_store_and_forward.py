"""Checklist C (SPARKPLUG.md §9, DESIGN.md §4 item 1): store-and-forward against a real broker.

Real Mosquitto (own port), the real ``EdgeAgent`` and ``MesServer`` (SQLite) in-process, and a
raw observer on ``spBv1.0/#``. Every data-flow test compares every value the simulator produced
with the historian at the end: 0 lost, 0 duplicated, replayed values ``is_historical``, and the
live table holds the newest produced value of every tag. Waits are conditions with deadlines.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from _sandf_rig import (
    GROUP,
    HOST_ID,
    NODE,
    TIMEOUT,
    LiveWatch,
    Recorder,
    WireMessage,
    WireObserver,
    assert_exact_history,
    assert_replayed_historical,
    edge_settings,
    quiesce,
    server_settings,
    start_edge,
    start_server,
    wait_for,
)

from andon.domain.users import Role
from andon.edge.agent import EdgeAgent
from andon.edge.spool import StoreAndForwardSpool
from andon.server.mes_server import MesServer
from andon.sparkplug.topic import MessageType
from andon.testing.auth import authenticated_client
from andon.testing.brokers import MosquittoBroker
from andon.testing.clock import SystemClock
from andon.testing.processes import (
    AndonProcess,
    compare_with_history,
    count_recorded_lines,
    read_recorded_values,
    wait_until,
    write_toml,
)
from andon.testing.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.mosquitto]


@pytest.fixture
def broker(tmp_path: Path, mosquitto_binary: str) -> Iterator[MosquittoBroker]:
    b = MosquittoBroker(data_dir=tmp_path / "mosquitto", binary=mosquitto_binary)
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def observer(broker: MosquittoBroker) -> Iterator[WireObserver]:
    o = WireObserver(broker.port).start()
    try:
        yield o
    finally:
        o.stop()


def test_s01_buffers_while_broker_unreachable(
    tmp_path: Path, broker: MosquittoBroker, observer: WireObserver
) -> None:
    watch = LiveWatch()
    server = start_server(server_settings(tmp_path, broker.port), watch)
    recorder = Recorder()
    agent = start_edge(edge_settings(tmp_path, broker.port, primary_host_id=HOST_ID), recorder)
    try:
        observer.wait_message(MessageType.NBIRTH)
        wait_for(lambda: server.store.count() > 50, "live data never reached the historian")

        broker.stop()
        wait_for(lambda: not agent.client.connected, "the edge never noticed the broker stop")
        outage_from = len(recorder)
        held_at_stop = agent.spool.stats().values
        wait_for(
            lambda: agent.spool.stats().values >= held_at_stop + 200,
            lambda: f"the spool did not grow while the broker was down: {agent.spool.stats()}",
        )
        grown = agent.spool.stats()
        outage_to = len(recorder)
        broker.start()  # same port
        observer.restart()

        wait_for(lambda: agent.publisher.stats.births_total >= 2, "no births after the outage")
        quiesce(agent)
        result = assert_exact_history(server, recorder, watch=watch)
        replayed = assert_replayed_historical(
            server, recorder.recorded()[outage_from:outage_to], observer
        )
        print(
            f"S-01 broker: spool grew to {grown.records} records / {grown.values} values; "
            f"{replayed} replayed values historical; {result.summary()}"
        )
        assert replayed > 0
    finally:
        agent.stop()
        server.stop()


def test_s01_buffers_while_primary_host_offline(
    tmp_path: Path, broker: MosquittoBroker, observer: WireObserver
) -> None:
    settings = server_settings(tmp_path, broker.port)
    server = start_server(settings)
    recorder = Recorder()
    agent = start_edge(edge_settings(tmp_path, broker.port, primary_host_id=HOST_ID), recorder)
    try:
        observer.wait_message(MessageType.NBIRTH)
        wait_for(lambda: server.store.count() > 50, "live data never reached the historian")

        mark = observer.count()
        server.stop()  # STATE offline (retained), timestamp >= its online one
        death = observer.wait_message(MessageType.NDEATH, since=mark)
        outage_from = len(recorder)
        held = agent.spool.stats().values
        wait_for(
            lambda: agent.spool.stats().values >= held + 200,
            lambda: f"the spool did not grow while the host was offline: {agent.spool.stats()}",
        )
        grown = agent.spool.stats()
        outage_to = len(recorder)
        observer.sentinel()
        published = observer.messages(
            NODE,
            [MessageType.NBIRTH, MessageType.DBIRTH, MessageType.DDATA, MessageType.NDATA],
            since=death.index,
        )
        assert not published, f"the edge published while its host was offline: {published[:3]}"
        wait_for(lambda: agent.client.connected, "the edge should wait connected, unborn")

        watch = LiveWatch()
        server = start_server(settings, watch)  # a new host session on the same database
        wait_for(lambda: agent.publisher.stats.births_total >= 2, "no births after host online")
        quiesce(agent)
        result = assert_exact_history(server, recorder, watch=watch)
        replayed = assert_replayed_historical(
            server, recorder.recorded()[outage_from:outage_to], observer
        )
        print(
            f"S-01 host: NDEATH bdSeq {death.bd_seq}; spool grew to {grown.records} records /"
            f" {grown.values} values with 0 messages published; {replayed} replayed values"
            f" historical; {result.summary()}"
        )
        assert replayed > 0
    finally:
        agent.stop()
        server.stop()


def _backlog_then_host(
    tmp_path: Path,
    broker: MosquittoBroker,
    observer: WireObserver,
    *,
    spool: dict[str, object],
    backlog_records: int,
) -> tuple[Recorder, EdgeAgent, MesServer, WireMessage, int]:
    """Edge with a primary host that is not running: it connects and spools. Once the spool
    holds ``backlog_records``, the server starts. Returns the STATE-online message the observer
    saw and how many of the first values produced were certainly spooled before the births.

    The simulator records a value when it is polled, the spool takes it a moment later, and the
    births send live what the spool did not hold yet (the edge did not have it). So the values
    counted as backlog are those recorded when the poller's spooled count had caught up with the
    recorder, read before the server starts: under load a poll's values may reach the spool only
    after the births."""
    recorder = Recorder()
    agent = start_edge(
        edge_settings(tmp_path, broker.port, primary_host_id=HOST_ID, spool=spool), recorder
    )
    wait_for(lambda: agent.client.connected, "the edge never connected")
    wait_for(
        lambda: agent.spool.stats().records >= backlog_records,
        lambda: f"the backlog did not build up: {agent.spool.stats()}",
    )

    def all_recorded_spooled() -> int | None:
        spooled = agent.poller.values_total  # read first: both counts only grow
        return spooled if spooled == len(recorder) else None

    backlog = wait_for(all_recorded_spooled, "the poller's spooled count never met the recorder")
    mark = observer.count()
    server = start_server(server_settings(tmp_path, broker.port))
    online = wait_for(
        lambda: next(
            (
                m
                for m in observer.messages(kinds=[MessageType.STATE], since=mark)
                if m.host_id == HOST_ID and m.state is not None and m.state[0]
            ),
            None,
        ),
        "the observer never saw the host's STATE online",
    )
    return recorder, agent, server, online, backlog


def _session(observer: WireObserver, since: int) -> list[WireMessage]:
    return observer.messages(
        NODE,
        [MessageType.NBIRTH, MessageType.DBIRTH, MessageType.DDATA, MessageType.NDATA],
        since=since,
    )


def _historical(message: WireMessage) -> bool | None:
    flags = {v.is_historical for v in message.values}
    assert len(flags) <= 1, f"message {message.index} mixes historical and live values"
    return flags.pop() if flags else None


def test_s02_births_first_then_backlog_historical_with_flush_quantity_and_period(
    tmp_path: Path, broker: MosquittoBroker, observer: WireObserver
) -> None:
    batch, period_ms, per_message = 4, 150, 30
    recorder, agent, server, online, before_births = _backlog_then_host(
        tmp_path,
        broker,
        observer,
        spool={
            "flush_batch_records": batch,
            "flush_period_ms": period_ms,
            "flush_values_per_message": per_message,
        },
        backlog_records=40,
    )
    try:
        wait_for(lambda: agent.publisher.stats.births_total >= 1, "no births")
        quiesce(agent)
        session = _session(observer, online.index)
        kinds = [m.kind for m in session]
        devices = len(agent.last_values.device_ids())
        assert kinds[0] is MessageType.NBIRTH, kinds[:3]
        assert kinds[1 : 1 + devices] == [MessageType.DBIRTH] * devices, kinds[: 2 + devices]
        data = session[1 + devices :]
        assert all(m.kind in (MessageType.DDATA, MessageType.NDATA) for m in data)
        ddata = [m for m in data if m.kind is MessageType.DDATA]
        historical = [m for m in ddata if _historical(m)]
        first_live = next((i for i, m in enumerate(ddata) if _historical(m) is False), len(ddata))
        assert historical == ddata[: len(historical)], "history must come first (in-order mode)"
        assert len(historical) <= first_live
        # Flush quantity: at most `batch` records (one message each) per publish round; rounds
        # are `period_ms` apart, so no half-period window holds more than one round.
        window = period_ms / 1000 / 2
        times = [m.at for m in historical]
        busiest = max(sum(1 for t in times if t0 <= t < t0 + window) for t0 in times)
        rounds = -(-len(historical) // batch)
        span = times[-1] - times[0]
        assert busiest <= batch, f"{busiest} historical messages within {window:.3f} s"
        assert span >= (rounds - 1) * period_ms / 1000 * 0.8, (
            f"{len(historical)} messages in {rounds} rounds took only {span:.3f} s"
        )
        result = assert_exact_history(server, recorder)
        replayed = assert_replayed_historical(server, recorder.recorded()[:before_births], observer)
        sizes = [m.size for m in historical]
        most = max(len(m.values) for m in historical)
        assert most <= per_message, f"a historical message carried {most} values"
        print(
            f"S-02: births then {len(historical)} historical DDATA in {rounds} rounds of <="
            f" {batch} over {span:.2f} s (busiest {window * 1000:.0f} ms window: {busiest});"
            f" message sizes {min(sizes)}..{max(sizes)} B, <= {most} values; {replayed} values"
            f" replayed as history; {result.summary()}"
        )
    finally:
        agent.stop()
        server.stop()


def _wait_live_data(observer: WireObserver, since: int) -> None:
    """Let the edge run until live (non-historical) DDATA flows after the births."""
    wait_for(
        lambda: any(
            _historical(m) is False
            for m in _session(observer, since)
            if m.kind is MessageType.DDATA
        ),
        "no live DDATA after the births",
    )


def _per_metric_order_violations(messages: list[WireMessage]) -> list[tuple[str, int, int]]:
    last: dict[tuple[str | None, str], int] = {}
    bad: list[tuple[str, int, int]] = []
    for m in messages:
        for v in m.values:
            key = (v.device_id, v.name)
            if key in last and v.ts_ms <= last[key]:
                bad.append((f"{v.device_id}/{v.name}", last[key], v.ts_ms))
            last[key] = v.ts_ms
    return bad


def test_s03_in_order_holds_live_values_until_backlog_is_empty(
    tmp_path: Path, broker: MosquittoBroker, observer: WireObserver
) -> None:
    recorder, agent, server, online, before_births = _backlog_then_host(
        tmp_path,
        broker,
        observer,
        spool={"flush_batch_records": 5, "flush_period_ms": 100, "flush_mode": "in_order"},
        backlog_records=50,
    )
    try:
        wait_for(lambda: agent.publisher.stats.births_total >= 1, "no births")
        _wait_live_data(observer, online.index)
        quiesce(agent)
        ddata = [m for m in _session(observer, online.index) if m.kind is MessageType.DDATA]
        flags = [_historical(m) for m in ddata]
        last_historical = max(i for i, f in enumerate(flags) if f)
        live_before = [i for i in range(last_historical) if flags[i] is False]
        assert not live_before, f"live DDATA at {live_before[:5]} before the backlog was empty"
        live_after = sum(1 for f in flags[last_historical + 1 :] if f is False)
        assert live_after > 0, "no live data after the backlog: the test proved nothing"
        bad = _per_metric_order_violations(ddata)
        assert not bad, f"per-metric order broken: {bad[:5]}"
        result = assert_exact_history(server, recorder)
        produced_after_backlog = len(recorder) - before_births
        print(
            f"S-03 in-order: {last_historical + 1} historical DDATA first, then {live_after}"
            f" live; {sum(len(m.values) for m in ddata)} values in strictly increasing"
            f" per-metric order; {produced_after_backlog} values produced after the backlog;"
            f" {result.summary()}"
        )
    finally:
        agent.stop()
        server.stop()


def test_s03_interleaved_sends_live_values_during_the_flush(
    tmp_path: Path, broker: MosquittoBroker, observer: WireObserver
) -> None:
    recorder, agent, server, online, _ = _backlog_then_host(
        tmp_path,
        broker,
        observer,
        spool={"flush_batch_records": 5, "flush_period_ms": 100, "flush_mode": "interleaved"},
        backlog_records=50,
    )
    try:
        wait_for(lambda: agent.publisher.stats.births_total >= 1, "no births")
        _wait_live_data(observer, online.index)
        quiesce(agent)
        ddata = [m for m in _session(observer, online.index) if m.kind is MessageType.DDATA]
        flags = [_historical(m) for m in ddata]
        last_historical = max(i for i, f in enumerate(flags) if f)
        live_before = sum(1 for f in flags[:last_historical] if f is False)
        assert live_before > 0, "interleaved mode sent no live data before the backlog finished"
        result = assert_exact_history(server, recorder)
        print(
            f"S-03 interleaved: {live_before} live DDATA before the last of"
            f" {sum(1 for f in flags if f)} historical ones; {result.summary()}"
        )
    finally:
        agent.stop()
        server.stop()


def _assert_limit_drops(
    tmp_path: Path,
    broker: MosquittoBroker,
    observer: WireObserver,
    spool: dict[str, object],
    label: str,
) -> None:
    recorder = Recorder()
    agent = start_edge(
        edge_settings(tmp_path, broker.port, primary_host_id=HOST_ID, spool=spool), recorder
    )
    server: MesServer | None = None
    try:
        wait_for(
            lambda: agent.spool.stats().dropped_values_total >= 100,
            lambda: f"the spool never dropped: {agent.spool.stats()}",
        )
        held = agent.spool.stats()
        assert held.bytes <= agent.spool.max_bytes
        assert agent.poller.errors_total == 0
        server = start_server(server_settings(tmp_path, broker.port))
        wait_for(lambda: agent.publisher.stats.births_total >= 1, "no births")
        http = authenticated_client(server.api, Role.OPERATOR)

        def reported() -> int:
            assert server is not None
            server.ingest.drain(1.0)
            nodes = http.get("/api/v1/edges").json()
            node = next((n for n in nodes if n["edge_node_id"] == NODE), None)
            value = (node or {}).get("spool", {}).get("DroppedValues", 0)
            return int(value or 0)

        shown = wait_for(reported, "GET /api/v1/edges never showed DroppedValues")
        quiesce(agent)
        dropped = agent.spool.stats().dropped_values_total
        recorded = recorder.recorded()
        assert server.ingest.drain(TIMEOUT)
        assert server.historian.flush(TIMEOUT)
        comparison = compare_with_history(server.store, recorded)
        lost = len(comparison.missing)
        assert 0 < lost <= dropped, comparison.summary()
        assert not comparison.mismatched, comparison.summary()
        assert not comparison.unexpected, comparison.summary()
        assert comparison.stored_rows == comparison.distinct_keys - lost  # nothing twice
        assert comparison.total_rows == comparison.stored_rows
        newest_lost = max(ts for _, ts in comparison.missing)
        kept_after = [r for r in recorded if r.ts_ms > newest_lost]
        assert kept_after, "everything newer than the dropped data must be kept"
        print(
            f"S-04 {label}: spool held {held.records} records / {held.bytes} B (limit"
            f" {agent.spool.max_bytes} B) after dropping; dropped_values_total {dropped};"
            f" API DroppedValues {shown}; produced {len(recorded)}, missing {lost} (all"
            f" oldest), {len(kept_after)} newer values all stored once; poller errors 0"
        )
    finally:
        agent.stop()
        if server is not None:
            server.stop()


def test_s04_size_limit_drops_oldest_with_counter_and_alarm(
    tmp_path: Path, broker: MosquittoBroker, observer: WireObserver
) -> None:
    _assert_limit_drops(tmp_path, broker, observer, {"max_mb": 0.01}, "max_mb 0.01")


def test_s04_age_limit_drops_oldest_with_counter_and_alarm(
    tmp_path: Path, broker: MosquittoBroker, observer: WireObserver
) -> None:
    _assert_limit_drops(tmp_path, broker, observer, {"max_age_s": 1.0}, "max_age_s 1.0")


@pytest.mark.slow
def test_s06_rolling_buffer_recovers_the_detection_window(
    tmp_path: Path, broker: MosquittoBroker, observer: WireObserver
) -> None:
    """The host's link goes half-open (proxy paused): the broker keeps acknowledging the edge's
    data until it notices, after 1.5 x keep-alive, and publishes the host's STATE Will. What the
    broker acknowledged meanwhile never reached the host; the rolling buffer re-sends it."""
    proxy = TcpProxy("127.0.0.1", broker.port).start()
    watch = LiveWatch()
    server = start_server(server_settings(tmp_path, proxy.port), watch)
    recorder = Recorder()
    agent = start_edge(
        edge_settings(
            tmp_path, broker.port, primary_host_id=HOST_ID, spool={"rolling_window_s": 15.0}
        ),
        recorder,
    )
    try:
        observer.wait_message(MessageType.NBIRTH)
        wait_for(lambda: server.store.count() > 50, "live data never reached the historian")
        mark = observer.count()
        proxy.pause()
        paused_at = len(recorder)
        death = observer.wait_message(MessageType.NDEATH, since=mark)  # after the STATE Will
        assert server.ingest.drain(TIMEOUT)
        assert server.historian.flush(TIMEOUT)
        window = recorder.recorded()[paused_at:]
        acked_unseen = [r for r in window if not server.store.history(r.tag, r.ts_ms, r.ts_ms + 1)]
        assert acked_unseen, "no value was lost in the detection window: the test proved nothing"
        proxy.resume()
        wait_for(lambda: agent.publisher.stats.births_total >= 2, "no rebirth after host online")
        wait_for(lambda: agent.publisher.stats.resent_values_total > 0, "no rolling re-send")
        quiesce(agent)
        result = assert_exact_history(server, recorder, watch=watch)
        print(
            f"S-06: STATE Will after {death.at - observer.messages()[mark - 1].at:.1f} s;"
            f" {len(acked_unseen)} values produced since the link froze were not at the host;"
            f" {agent.publisher.stats.resent_values_total} values re-sent from the rolling"
            f" buffer; {result.summary()}"
        )
    finally:
        agent.stop()
        server.stop()
        proxy.stop()


def _spool_integrity(path: Path) -> tuple[str, int, int]:
    """``PRAGMA integrity_check`` and (records, values) of a spool file nobody has open."""
    conn = sqlite3.connect(path)
    try:
        check = conn.execute("PRAGMA integrity_check").fetchone()[0]
        records, values = conn.execute(
            "SELECT count(*), coalesce(sum(value_count), 0) FROM records"
        ).fetchone()
    finally:
        conn.close()
    return str(check), int(records), int(values)


@pytest.mark.slow
def test_s05_kill_9_mid_flush_loses_nothing_and_duplicates_at_most_the_rounds_in_flight(  # noqa: PLR0915
    tmp_path: Path, broker: MosquittoBroker, observer: WireObserver
) -> None:
    # Up to `rounds` publish rounds of `batch` records (one poll of one device each) are
    # unacknowledged at any moment: only those may be sent twice after the kill.
    batch, tags, rounds = 10, 20, 2
    spool_path = tmp_path / "edge-spool.db"
    record_path = tmp_path / "edge-record.jsonl"
    config = write_toml(
        tmp_path / "edge.toml",
        {
            "group_id": GROUP,
            "edge_node_id": NODE,
            "primary_host_id": HOST_ID,
            "poll_interval_s": 0.1,
            "mqtt": {"port": broker.port, "keepalive_s": 2},
            "spool": {
                "path": spool_path,
                "flush_batch_records": batch,
                "flush_rounds_in_flight": rounds,
                "flush_period_ms": 50,
                "rolling_window_s": 0.0,
            },
            "simulator": {
                "machines": 30,
                "tags_per_machine": tags,
                "time_scale": 30.0,
                "seed": 9,
                "record_path": record_path,
            },
        },
    )
    edge = AndonProcess(["edge", "--config", str(config)], tmp_path / "edge.log", name="edge")
    server: MesServer | None = None
    try:
        edge.start()
        wait_until(
            lambda: count_recorded_lines(record_path) >= 3000,
            TIMEOUT,
            "the edge subprocess did not build a backlog",
            processes=[edge],
        )
        mark = observer.count()
        server = start_server(server_settings(tmp_path, broker.port))

        def historical_messages() -> int:
            return sum(
                1
                for m in observer.messages(NODE, [MessageType.DDATA], since=mark)
                if m.values and m.values[0].is_historical
            )

        wait_until(
            lambda: historical_messages() >= 30,
            TIMEOUT,
            "the flush never started",
            processes=[edge],
        )
        edge.kill()  # SIGKILL mid-flush
        killed_after = count_recorded_lines(record_path)
        sent_before_kill = historical_messages()
        check, records_left, values_left = _spool_integrity(spool_path)
        assert check == "ok", check
        assert records_left > 0, "the flush had finished before the kill: the test proved nothing"
        left_at_kill = records_left
        reopened = StoreAndForwardSpool(spool_path, clock=SystemClock())
        try:
            assert reopened.stats().records == records_left
            assert reopened.stats().values == values_left
            assert len(reopened.peek(records_left + 1)) == records_left
        finally:
            reopened.close()

        mark_restart = observer.count()
        edge.start()
        observer.wait_message(MessageType.NBIRTH, since=mark_restart)

        def spool_empty() -> bool:
            return _spool_integrity(spool_path)[1] == 0

        wait_until(
            spool_empty, TIMEOUT, "the restarted edge never emptied its spool", processes=[edge]
        )
        assert edge.stop() == 0, edge.describe()
        check, records_left, _ = _spool_integrity(spool_path)
        assert check == "ok", check
        left: set[tuple[str, int]] = set()
        if records_left:
            with StoreAndForwardSpool(spool_path, clock=SystemClock()) as spool:
                left = {
                    (f"{GROUP}/{NODE}/{c.device_id}/{c.name}", c.ts_ms)
                    for r in spool.peek(records_left)
                    for c in r.changes
                }
        recorded = read_recorded_values(record_path, GROUP, NODE)
        keys = {(r.tag, r.ts_ms) for r in recorded}
        wait_for(
            lambda: server is not None and server.store.count() >= len(keys - left),
            "the history never caught up",
        )
        assert server.ingest.drain(TIMEOUT)
        assert server.historian.flush(TIMEOUT)
        comparison = compare_with_history(server.store, recorded)
        # Values the simulator produced in the poll the kill interrupted were never spooled
        # (nor could they be): they must be the last ones recorded before the kill.
        index = {(r.tag, r.ts_ms): i for i, r in enumerate(recorded)}
        missing = [k for k in comparison.missing if k not in left]
        unspooled_tail = [k for k in missing if killed_after - 30 * tags <= index[k] < killed_after]
        assert missing == unspooled_tail, f"lost values: {missing[:5]}"
        assert not comparison.mismatched, comparison.summary()
        assert not comparison.unexpected, comparison.summary()
        assert comparison.total_rows == comparison.stored_rows  # each (tag, ts) once
        seen: dict[tuple[str | None, str, int], int] = {}
        for m in observer.messages(NODE, [MessageType.DDATA], since=mark):
            for v in m.values:
                key = (v.device_id, v.name, v.ts_ms)
                seen[key] = seen.get(key, 0) + 1
        duplicates = sum(n - 1 for n in seen.values() if n > 1)
        bound = rounds * batch * tags
        assert duplicates <= bound, f"{duplicates} values sent twice (> {rounds} rounds)"
        print(
            f"S-05: killed after {sent_before_kill} historical DDATA with {left_at_kill} records"
            f" left; integrity ok; {len(recorded)} values produced in both runs,"
            f" {len(missing)} lost in the interrupted poll, {len(left)} still spooled;"
            f" {duplicates} values sent twice (bound {bound}); {comparison.summary()}"
        )
    finally:
        edge.stop()
        if server is not None:
            server.stop()
