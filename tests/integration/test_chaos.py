"""Chaos tests: zero loss through the store-and-forward chain when one part fails.

Each test runs a simulated plant (``andon edge`` with the built-in simulator recording every
value it produces) and ``andon server`` as real child processes, injects one fault while data
flows, recovers, stops the edge cleanly and then compares every produced value with the
historian:

* 0 lost, 0 duplicated (nothing the record lacks), same values;
* per-tag order kept (the record of every tag is strictly increasing in time and the history
  holds the same sequence);
* replayed values are flagged historical: every value produced while the edge could not reach
  the host (``historical`` time ranges) is ``is_historical`` in the history, and every value
  produced in steady state (``live`` time ranges) is not;
* live values never overwritten by older ones: once the flow is quiet, the live value of every
  tag (``GET /api/v1/tags``) is its newest produced value.

Faults: broker SIGKILL for 30 s (Mosquitto + PostgreSQL, embedded NATS + SQLite); server
SIGKILL; edge SIGKILL in the middle of a flush; PostgreSQL taken away (reset and refused, then
a half-open link) behind a TCP proxy; a half-open link between edge and broker; the primary host
stopped cleanly while the broker stays up.
"""

from __future__ import annotations

import itertools
import json
import math
import time
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from andon.mqtt.embedded_broker import BrokerProcess, EmbeddedNatsBroker
from andon.testing.brokers import MosquittoBroker
from andon.testing.ports import free_port
from andon.testing.processes import (
    AndonRig,
    RecordedValue,
    compare_with_history,
    http_get,
    http_get_json,
    wait_until,
    write_toml,
)
from andon.testing.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: 10 machines x 20 tags, state durations compressed 30x: about 100 values/s, states and
#: counters moving.
MACHINES = 10
TAGS_PER_MACHINE = 20
TIME_SCALE = 30.0
POLL_INTERVAL_S = 0.1
#: Keep-alive of edge and server: a dead peer or link is noticed within ~3 s.
KEEPALIVE_S = 2
#: The edge's rolling buffer: acknowledged data re-sent as history after the next births.
ROLLING_WINDOW_S = 30.0
#: Values produced this long before a fault must have arrived live (not historical).
STEADY_MARGIN_MS = 5_000
#: A value polled just before the recovery may still go out live after the new births.
RECOVERY_MARGIN_MS = 500
_END_OF_TIME_MS = 2**62


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# -- brokers, configuration --------------------------------------------------------------------


def _mosquitto(tmp_path: Path, request: pytest.FixtureRequest) -> MosquittoBroker:
    binary = request.getfixturevalue("mosquitto_binary")
    return MosquittoBroker(data_dir=tmp_path / "mosquitto", binary=binary)


def _nats(tmp_path: Path) -> EmbeddedNatsBroker:
    return EmbeddedNatsBroker(tmp_path / "nats", mqtt_port=free_port())


@pytest.fixture
def stop_later() -> Iterator[list[BrokerProcess | TcpProxy]]:
    """Brokers and proxies a test started; stopped at the end whatever happened."""
    started: list[BrokerProcess | TcpProxy] = []
    yield started
    for item in reversed(started):
        item.stop()


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _amend_toml(path: Path, extra: Mapping[str, Any]) -> None:
    """Merge ``extra`` into a TOML file the rig wrote (the rig fixes [mqtt] and [spool])."""
    with path.open("rb") as handle:
        current = tomllib.load(handle)
    write_toml(path, _deep_merge(current, extra))


def _make_rig(
    tmp_path: Path,
    *,
    mqtt_port: int,
    database_url: str,
    seed: int,
    edge: Mapping[str, Any] | None = None,
    server: Mapping[str, Any] | None = None,
) -> AndonRig:
    rig = AndonRig(
        tmp_path / "andon",
        mqtt_port=mqtt_port,
        database_url=database_url,
        poll_interval_s=POLL_INTERVAL_S,
        simulator={
            "machines": MACHINES,
            "tags_per_machine": TAGS_PER_MACHINE,
            "time_scale": TIME_SCALE,
            "seed": seed,
        },
    )
    _amend_toml(
        rig.edge_config,
        _deep_merge(
            {
                "mqtt": {"keepalive_s": KEEPALIVE_S},
                "spool": {"rolling_window_s": ROLLING_WINDOW_S},
            },
            edge or {},
        ),
    )
    _amend_toml(
        rig.server_config, _deep_merge({"mqtt": {"keepalive_s": KEEPALIVE_S}}, server or {})
    )
    return rig


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'andon' / 'andon.db'}"


# -- waiting -----------------------------------------------------------------------------------


def _backlog(rig: AndonRig) -> int:
    """Values in the edge's spool not yet acknowledged by the broker."""
    return int(str(rig.edge_status()["backlog values"]))


def _backlog_records(rig: AndonRig) -> int:
    return int(str(rig.edge_status()["backlog records"]))


def _wait_steady(rig: AndonRig) -> int:
    """Start server and edge, wait until data flows; returns the start of the steady state."""
    rig.start_server()
    rig.start_edge()
    wait_until(
        lambda: rig.store.count() >= 200,
        30.0,
        lambda: f"first data in the history ({rig.store.count()} rows)",
        processes=rig.processes,
    )
    steady_from = now_ms() + 1_000
    # Some seconds of steady flow, so that the steady-state check has values to check.
    rig.wait_for_recorded(rig.recorded_count() + 700, timeout=30.0)
    return steady_from


def _wait_spooling(rig: AndonRig, at_least: int = 200, timeout: float = 20.0) -> int:
    return wait_until(
        lambda: (n := _backlog(rig)) >= at_least and n,
        timeout,
        lambda: f"the edge spooled only {_backlog(rig)} values during the fault",
        processes=[rig.edge],
    )


def _wait_caught_up(rig: AndonRig, timeout: float = 45.0) -> int:
    """Wait until the history holds every value recorded so far (the backlog is flushed);
    returns the time it did. Does not fail: the comparison at the end says what is missing."""
    keys = {(r.tag, r.ts_ms) for r in rig.recorded()}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if rig.store.count() >= len(keys):
            return now_ms()
        time.sleep(0.2)  # polling a condition with a deadline
    print(f"warning: history holds {rig.store.count()} of {len(keys)} values after {timeout} s")
    return now_ms()


def _finish(rig: AndonRig, more_values: int = 300) -> None:
    """Some live flow after the recovery, then a clean stop of the edge and a quiet history."""
    rig.wait_for_recorded(rig.recorded_count() + more_values, timeout=30.0)
    code = rig.stop_edge()
    assert code == 0, f"the edge did not stop cleanly (exit code {code})\n{rig.describe()}"
    keys = len({(r.tag, r.ts_ms) for r in rig.recorded()})
    deadline = time.monotonic() + 45.0
    last, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = rig.store.count()
        if count >= keys:
            return
        if count != last:
            last, stable_since = count, time.monotonic()
        elif time.monotonic() - stable_since > 15.0:
            return  # nothing arrives any more: the comparison says what is missing
        time.sleep(0.2)  # polling a condition with a deadline


# -- the verdict -------------------------------------------------------------------------------


@dataclass
class ChaosResult:
    name: str
    produced: int = 0
    distinct: int = 0
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    mismatched: int = 0
    historical: int = 0
    must_be_historical: int = 0
    must_be_live: int = 0
    birth_carried: int = 0
    not_flagged: list[tuple[str, int]] = field(default_factory=list)
    wrongly_flagged: list[tuple[str, int]] = field(default_factory=list)
    order_errors: list[str] = field(default_factory=list)
    live_errors: list[str] = field(default_factory=list)
    summary: str = ""

    def counts(self) -> str:
        return (
            f"[{self.name}] produced {self.produced} (distinct {self.distinct}), "
            f"stored {self.stored}, lost {self.lost}, duplicated {self.duplicated}, "
            f"mismatched {self.mismatched}, historical {self.historical} "
            f"(fault window: {self.must_be_historical} values, {len(self.not_flagged)} not "
            f"flagged, {self.birth_carried} newest-per-tag exempt as carried by births; "
            f"steady state: {self.must_be_live} values, {len(self.wrongly_flagged)} "
            f"flagged), order errors {len(self.order_errors)}, "
            f"live errors {len(self.live_errors)}"
        )


def _in(ts_ms: int, ranges: list[tuple[int, int]]) -> bool:
    return any(start <= ts_ms <= end for start, end in ranges)


def _same(recorded: object, live: object) -> bool:
    if isinstance(recorded, float) and math.isnan(recorded):
        return live is None
    if isinstance(recorded, float) and isinstance(live, int | float):
        return float(live) == recorded
    return recorded == live


def _live_ms(text: str) -> int:
    return round(datetime.fromisoformat(text).timestamp() * 1000)


def _verdict(
    rig: AndonRig,
    name: str,
    *,
    historical: list[tuple[int, int]],
    live: list[tuple[int, int]],
) -> ChaosResult:
    recorded = rig.recorded()
    comparison = compare_with_history(rig.store, recorded)
    result = ChaosResult(
        name,
        produced=comparison.recorded_values,
        distinct=comparison.distinct_keys,
        stored=comparison.stored_rows,
        lost=len(comparison.missing),
        duplicated=len(comparison.unexpected)
        + (comparison.total_rows - comparison.stored_rows)
        + len(comparison.conflicting),
        mismatched=len(comparison.mismatched),
        summary=comparison.summary(),
    )
    by_tag: dict[str, list[RecordedValue]] = {}
    for item in recorded:
        by_tag.setdefault(item.tag, []).append(item)
    for tag, items in sorted(by_tag.items()):
        times = [r.ts_ms for r in items]
        if any(b <= a for a, b in itertools.pairwise(times)):
            result.order_errors.append(f"{tag}: the record is not strictly increasing in time")
        rows = rig.store.history(tag, 0, _END_OF_TIME_MS, limit=len(items) + 1000)
        # The births after a fault carry each tag's newest value as its current value; the
        # host stores that copy first (live, the historian keeps the first write), so the
        # newest value of a tag at the end of a fault window may be unflagged.
        birth_carried = {max((t for t in times if t <= end), default=None) for _, end in historical}
        if [s.ts_ms for s in rows] != sorted(set(times)):
            result.order_errors.append(f"{tag}: the history is not the recorded sequence")
        for row in rows:
            if row.is_historical:
                result.historical += 1
            if _in(row.ts_ms, historical):
                result.must_be_historical += 1
                if row.ts_ms in birth_carried:
                    result.birth_carried += 1
                elif not row.is_historical:
                    result.not_flagged.append((tag, row.ts_ms))
            elif _in(row.ts_ms, live):
                result.must_be_live += 1
                if row.is_historical:
                    result.wrongly_flagged.append((tag, row.ts_ms))
    # Live values: the newest produced value of every tag, never an older one.
    prefix = f"{rig.group_id}/{rig.edge_node_id}/"
    served = {
        tag["path"]: tag for tag in http_get_json(f"{rig.base_url}/api/v1/tags?prefix={prefix}")
    }
    for tag, items in sorted(by_tag.items()):
        newest = max(items, key=lambda r: r.ts_ms)
        held = served.get(tag)
        if held is None:
            result.live_errors.append(f"{tag}: no live value")
        elif _live_ms(held["source_time"]) != newest.ts_ms:
            result.live_errors.append(
                f"{tag}: live at {held['source_time']}, newest produced at {newest.ts_ms}"
            )
        elif not _same(newest.value, held["value"]):
            result.live_errors.append(f"{tag}: live {held['value']!r}, newest {newest.value!r}")
    print(result.counts())
    return result


def _check(rig: AndonRig, result: ChaosResult, *, min_historical: int = 1) -> None:
    text = result.counts()
    details = f"{text}\n{result.summary}\n{rig.describe()}"
    assert result.produced > 0, details
    assert result.lost == 0, f"values lost: {details}"
    assert result.duplicated == 0, f"values duplicated or unexpected: {details}"
    assert result.mismatched == 0, f"values changed: {details}"
    assert result.stored == result.distinct, details
    assert not result.order_errors, f"order: {result.order_errors[:5]}\n{details}"
    assert result.must_be_live >= 100, f"too few steady-state values to check: {details}"
    assert not result.wrongly_flagged, (
        f"steady-state values flagged historical, e.g. {result.wrongly_flagged[:5]}: {details}"
    )
    assert result.must_be_historical >= min_historical, (
        f"too few values produced in the fault window: {details}"
    )
    assert not result.not_flagged, (
        f"values of the fault window not flagged historical, e.g. {result.not_flagged[:5]}: "
        f"{details}"
    )
    assert not result.live_errors, f"live values: {result.live_errors[:5]}\n{details}"


# -- 1. broker killed for 30 s -----------------------------------------------------------------


@pytest.mark.parametrize(
    "stack",
    [
        pytest.param("mosquitto-postgres", marks=[pytest.mark.mosquitto, pytest.mark.postgres]),
        "nats-sqlite",
    ],
)
def test_broker_killed_for_30_s_loses_nothing(
    stack: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    stop_later: list[BrokerProcess | TcpProxy],
) -> None:
    if stack == "mosquitto-postgres":
        broker: BrokerProcess = _mosquitto(tmp_path, request)
        database_url = request.getfixturevalue("postgres_url")
    else:
        broker = _nats(tmp_path)
        database_url = _sqlite_url(tmp_path)
    broker.start()
    stop_later.append(broker)
    with _make_rig(tmp_path, mqtt_port=broker.port, database_url=database_url, seed=11) as rig:
        steady_from = _wait_steady(rig)

        broker.kill()
        fault_from = now_ms()
        _wait_spooling(rig)
        wait_until(
            lambda: now_ms() - fault_from >= 30_000,
            40.0,
            "30 s of broker outage",
            processes=rig.processes,
        )
        fault_to = now_ms()
        broker.start()
        recovered = _wait_caught_up(rig, timeout=60.0)  # the clients' backoff is up to 30 s
        _finish(rig)

        result = _verdict(
            rig,
            f"broker kill, {stack}",
            historical=[(fault_from, fault_to - RECOVERY_MARGIN_MS)],
            live=[(steady_from, fault_from - STEADY_MARGIN_MS), (recovered + 2_000, now_ms())],
        )
        _check(rig, result, min_historical=1_000)


# -- 2. server killed ----------------------------------------------------------------------------


@pytest.mark.mosquitto
@pytest.mark.postgres
def test_server_killed_edge_buffers_and_rolling_buffer_covers_the_will_delay(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    postgres_url: str,
    stop_later: list[BrokerProcess | TcpProxy],
) -> None:
    broker = _mosquitto(tmp_path, request)
    broker.start()
    stop_later.append(broker)
    with _make_rig(tmp_path, mqtt_port=broker.port, database_url=postgres_url, seed=12) as rig:
        steady_from = _wait_steady(rig)

        rig.server.kill()
        fault_from = now_ms()
        # The broker publishes the host's Will after 1.5 x keep-alive; the edge then buffers.
        _wait_spooling(rig)
        rig.wait_for_recorded(rig.recorded_count() + 600, timeout=30.0)
        fault_to = now_ms()
        rig.start_server()
        recovered = _wait_caught_up(rig)
        _finish(rig)

        result = _verdict(
            rig,
            "server kill -9",
            historical=[(fault_from, fault_to - RECOVERY_MARGIN_MS)],
            live=[(steady_from, fault_from - STEADY_MARGIN_MS), (recovered + 2_000, now_ms())],
        )
        _check(rig, result, min_historical=500)


# -- 3. edge killed in the middle of a flush -----------------------------------------------------


def test_edge_killed_during_flush_resumes_and_loses_nothing(
    tmp_path: Path, stop_later: list[BrokerProcess | TcpProxy]
) -> None:
    broker = _nats(tmp_path)
    broker.start()
    stop_later.append(broker)
    # A slow flush (5 records per round, 0.2 s apart: 25 records/s against ~12 produced, one
    # record being one device's changes of one poll) so that the kill lands in its middle.
    edge = {"spool": {"flush_batch_records": 5, "flush_period_ms": 200}}
    with _make_rig(
        tmp_path, mqtt_port=broker.port, database_url=_sqlite_url(tmp_path), seed=13, edge=edge
    ) as rig:
        steady_from = _wait_steady(rig)

        assert rig.stop_server() == 0, rig.describe()
        fault_from = now_ms()
        _wait_spooling(rig)
        wait_until(
            lambda: _backlog_records(rig) >= 150,
            30.0,
            lambda: f"a backlog of 150 records (now {_backlog_records(rig)})",
            processes=[rig.edge],
        )
        fault_to = now_ms()
        rig.start_server()
        depth = _backlog_records(rig)

        def mid_flush() -> bool:
            now = _backlog_records(rig)
            return depth * 0.25 < now < depth * 0.75

        wait_until(
            mid_flush, 30.0, f"the edge flushing its {depth} records", processes=rig.processes
        )
        left = _backlog_records(rig)
        rig.edge.kill()
        print(f"edge killed while flushing: {left} of {depth} records left in the spool")
        rig.start_edge()
        recovered = _wait_caught_up(rig)
        _finish(rig)

        result = _verdict(
            rig,
            "edge kill -9 during flush",
            historical=[(fault_from, fault_to - RECOVERY_MARGIN_MS)],
            live=[(steady_from, fault_from - STEADY_MARGIN_MS), (recovered + 2_000, now_ms())],
        )
        _check(rig, result, min_historical=1_000)


# -- 4. PostgreSQL taken away --------------------------------------------------------------------


def _database_ok(rig: AndonRig) -> bool | None:
    status, body = http_get(f"{rig.base_url}/api/v1/health", timeout=2.0)
    if status not in (200, 503):
        return None
    return bool(json.loads(body)["components"]["database"]["ok"])


@pytest.mark.mosquitto
@pytest.mark.postgres
def test_postgres_taken_away_while_data_flows_loses_nothing(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    postgres_url: str,
    stop_later: list[BrokerProcess | TcpProxy],
) -> None:
    broker = _mosquitto(tmp_path, request)
    broker.start()
    stop_later.append(broker)
    direct = make_url(postgres_url)
    proxy = TcpProxy(direct.host or "127.0.0.1", direct.port or 5432).start()
    stop_later.append(proxy)
    proxied = direct.set(port=proxy.port).render_as_string(hide_password=False)
    # The server reaches PostgreSQL through the proxy; the test reads it directly.
    with _make_rig(
        tmp_path,
        mqtt_port=broker.port,
        database_url=postgres_url,
        seed=14,
        server={"database_url": proxied},
    ) as rig:
        steady_from = _wait_steady(rig)

        # a) connections reset, new ones refused: the database is gone.
        proxy.cut(refuse=True)
        wait_until(
            lambda: _database_ok(rig) is False,
            30.0,
            "the server noticed the database outage",
            processes=rig.processes,
        )
        rows_down = rig.store.count()
        rig.wait_for_recorded(rig.recorded_count() + 800, timeout=30.0)
        assert rig.store.count() == rows_down, "rows arrived through a refused proxy"
        proxy.resume()
        wait_until(
            lambda: _database_ok(rig),
            30.0,
            "the server noticed the database is back",
            processes=rig.processes,
        )
        # b) a half-open link: the database stops answering, the sockets stay open.
        proxy.pause()
        rig.wait_for_recorded(rig.recorded_count() + 400, timeout=30.0)
        proxy.resume()
        _wait_caught_up(rig)
        _finish(rig)

        # The edge never lost its session: nothing is replayed, nothing is historical.
        result = _verdict(rig, "postgres outage", historical=[], live=[(steady_from, now_ms())])
        _check(rig, result, min_historical=0)


# -- 5. half-open link between edge and broker ---------------------------------------------------


@pytest.mark.mosquitto
def test_half_open_link_between_edge_and_broker_loses_nothing(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    stop_later: list[BrokerProcess | TcpProxy],
) -> None:
    broker = _mosquitto(tmp_path, request)
    broker.start()
    stop_later.append(broker)
    proxy = TcpProxy("127.0.0.1", broker.port).start()
    stop_later.append(proxy)
    # The edge reaches the broker through the proxy; the server connects directly.
    with _make_rig(
        tmp_path,
        mqtt_port=broker.port,
        database_url=_sqlite_url(tmp_path),
        seed=15,
        edge={"mqtt": {"port": proxy.port}},
    ) as rig:
        steady_from = _wait_steady(rig)

        proxy.pause()
        fault_from = now_ms()
        # Noticed by keep-alive (1.5 x 2 s) on both sides; the edge keeps its data meanwhile.
        _wait_spooling(rig, at_least=500)
        rig.wait_for_recorded(rig.recorded_count() + 600, timeout=30.0)
        fault_to = now_ms()
        proxy.resume()
        recovered = _wait_caught_up(rig)
        _finish(rig)

        result = _verdict(
            rig,
            "half-open edge-broker link",
            historical=[(fault_from, fault_to - RECOVERY_MARGIN_MS)],
            live=[(steady_from, fault_from - STEADY_MARGIN_MS), (recovered + 2_000, now_ms())],
        )
        _check(rig, result, min_historical=500)


# -- 6. primary host offline, broker up ----------------------------------------------------------


def test_primary_host_offline_edge_buffers_until_it_returns(
    tmp_path: Path, stop_later: list[BrokerProcess | TcpProxy]
) -> None:
    broker = _nats(tmp_path)
    broker.start()
    stop_later.append(broker)
    with _make_rig(
        tmp_path, mqtt_port=broker.port, database_url=_sqlite_url(tmp_path), seed=16
    ) as rig:
        steady_from = _wait_steady(rig)

        assert rig.stop_server() == 0, f"the server did not stop cleanly\n{rig.describe()}"
        fault_from = now_ms()
        rows_at_stop = rig.store.count()
        _wait_spooling(rig, at_least=300)
        rig.wait_for_recorded(rig.recorded_count() + 500, timeout=30.0)
        assert rig.store.count() == rows_at_stop
        fault_to = now_ms()
        rig.start_server()
        recovered = _wait_caught_up(rig)
        _finish(rig)

        result = _verdict(
            rig,
            "primary host offline",
            historical=[(fault_from, fault_to - RECOVERY_MARGIN_MS)],
            live=[(steady_from, fault_from - STEADY_MARGIN_MS), (recovered + 2_000, now_ms())],
        )
        _check(rig, result, min_historical=500)
