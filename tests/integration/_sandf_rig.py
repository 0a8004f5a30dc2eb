"""Shared rig of the store-and-forward (checklist C) and edge-wire (checklist B) tests.

Real Mosquitto brokers (``MosquittoBroker``, own port each), the real ``EdgeAgent`` and the real
``MesServer`` (SQLite) in-process, and a raw ``WireObserver`` client subscribed to ``spBv1.0/#``
that keeps every message in arrival order (aliases resolved from the births).

Every data-flow test ends with :func:`assert_exact_history`: every value the simulator produced
(``record_to``) is in the historian exactly once with the same value, nothing else is there, and
the live table holds the newest produced value of every tag.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from andon.edge.agent import EdgeAgent
from andon.edge.sources.base import TagChange
from andon.mqtt.interface import MqttEndpoint
from andon.mqtt.paho_client import PahoBrokerClient
from andon.server.live_tags import LiveTag
from andon.server.mes_server import MesServer
from andon.settings import EdgeSettings, MqttSettings, ServerSettings
from andon.sparkplug.codec import decode_payload, decode_state, encode_payload
from andon.sparkplug.errors import PayloadError, TopicError
from andon.sparkplug.model import DataType, Metric, Payload
from andon.sparkplug.topic import MessageType, parse_topic
from andon.storage.store import HistorianStore
from andon.testing.processes import (
    HistoryComparison,
    RecordedValue,
    compare_with_history,
    wait_until,
)

T = TypeVar("T")

GROUP = "Plant1"
NODE = "Edge1"
HOST_ID = "andon-sandf"
EDGE_CLIENT_ID = f"andon-edge-{GROUP}-{NODE}"
TIMEOUT = 20.0
KEEPALIVE_S = 2
_END_OF_TIME_MS = 2**62


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def wait_for(
    condition: Callable[[], T], message: str | Callable[[], str], timeout: float = TIMEOUT
) -> T:
    """Poll ``condition`` (every 50 ms) until truthy, with a deadline."""
    return wait_until(condition, timeout, message, interval=0.05)


# -- the raw observer --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WireValue:
    device_id: str | None
    name: str
    ts_ms: int
    value: object
    is_historical: bool


@dataclass(frozen=True, slots=True)
class WireMessage:
    index: int
    at: float  # time.monotonic() on arrival
    topic: str
    kind: MessageType | None
    edge_node_id: str | None
    device_id: str | None
    host_id: str | None
    size: int
    payload: Payload | None
    state: tuple[bool, int] | None  # (online, timestamp) of a STATE message
    values: tuple[WireValue, ...] = ()

    @property
    def bd_seq(self) -> int | None:
        if self.payload is None:
            return None
        for metric in self.payload.metrics:
            if metric.name == "bdSeq" and isinstance(metric.value, int):
                return metric.value
        return None


class WireObserver:
    """A raw MQTT client on ``spBv1.0/#`` (QoS 1) keeping every message in arrival order."""

    def __init__(self, port: int, name: str = "observer") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._messages: list[WireMessage] = []
        self._aliases: dict[tuple[str | None, str | None], dict[int, tuple[str | None, str]]] = {}
        self._up = threading.Event()
        self.port = port
        self.client = self._new_client()

    def _new_client(self) -> PahoBrokerClient:
        endpoint = MqttEndpoint(
            port=self.port,
            client_id=f"test-{self.name}-{uuid.uuid4().hex[:8]}",
            keepalive_s=5,
            backoff_initial_s=0.05,
            backoff_max_s=0.2,
        )
        return PahoBrokerClient(endpoint, on_message=self._on_message, listener=self)

    def restart(self) -> None:
        """A new session at once (after a broker restart), before the edge and the server are
        back from their reconnect backoff, so the observer misses none of their messages."""
        self.client.stop()
        self._up.clear()
        self.client = self._new_client()
        self.start()

    # ConnectionListener
    def on_connected(self) -> None:
        if self.client.subscribe([("spBv1.0/#", 1)]):
            self._up.set()

    def on_disconnected(self, reason: str) -> None:
        self._up.clear()

    def start(self) -> WireObserver:
        self.client.start()
        assert self._up.wait(TIMEOUT), f"{self.name} did not connect and subscribe"
        return self

    def stop(self) -> None:
        self.client.stop()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        assert self.client.publish(topic, payload, qos=1, retain=retain).wait(TIMEOUT), topic

    def publish_state(self, host_id: str, online: bool, ts_ms: int, *, retain: bool = True) -> None:
        body = json.dumps({"online": online, "timestamp": ts_ms}).encode()
        self.publish(f"spBv1.0/STATE/{host_id}", body, retain=retain)

    def sentinel(self) -> WireMessage:
        """Publish a unique marker and wait until it comes back: everything the broker delivered
        to us before it (from connections it had already processed) is now in ``messages``."""
        host = f"sentinel-{uuid.uuid4().hex[:10]}"
        self.publish_state(host, online=True, ts_ms=0, retain=False)
        return wait_for(
            lambda: next((m for m in self.messages() if m.host_id == host), None),
            f"{self.name}: sentinel {host} never came back",
        )

    def _on_message(self, topic: str, payload: bytes) -> None:
        at = time.monotonic()
        try:
            parsed = parse_topic(topic)
        except TopicError:
            with self._lock:
                self._messages.append(
                    WireMessage(
                        len(self._messages),
                        at,
                        topic,
                        None,
                        None,
                        None,
                        None,
                        len(payload),
                        None,
                        None,
                    )
                )
            return
        kind = parsed.message_type
        decoded: Payload | None = None
        state: tuple[bool, int] | None = None
        values: tuple[WireValue, ...] = ()
        try:
            if kind is MessageType.STATE:
                s = decode_state(payload)
                state = (s.online, s.timestamp)
            else:
                decoded = decode_payload(payload)
        except PayloadError:
            pass
        with self._lock:
            key = (parsed.group_id, parsed.edge_node_id)
            if decoded is not None:
                if kind is MessageType.NBIRTH:
                    self._aliases[key] = {}
                aliases = self._aliases.setdefault(key, {})
                if kind in (MessageType.NBIRTH, MessageType.DBIRTH):
                    for m in decoded.metrics:
                        if m.alias is not None and m.name is not None:
                            aliases[m.alias] = (parsed.device_id, m.name)
                if kind in (
                    MessageType.NBIRTH,
                    MessageType.DBIRTH,
                    MessageType.NDATA,
                    MessageType.DDATA,
                ):
                    values = tuple(self._values(parsed.device_id, decoded.metrics, aliases))
            self._messages.append(
                WireMessage(
                    len(self._messages),
                    at,
                    topic,
                    kind,
                    parsed.edge_node_id,
                    parsed.device_id,
                    parsed.host_id,
                    len(payload),
                    decoded,
                    state,
                    values,
                )
            )

    @staticmethod
    def _values(
        device_id: str | None,
        metrics: Iterable[Metric],
        aliases: Mapping[int, tuple[str | None, str]],
    ) -> Iterable[WireValue]:
        for m in metrics:
            name = m.name
            if name is None and m.alias is not None and m.alias in aliases:
                name = aliases[m.alias][1]
            if name is None or name == "bdSeq" or name.startswith("Node Control/"):
                continue
            yield WireValue(device_id, name, m.timestamp or 0, m.value, m.is_historical)

    def messages(
        self, node: str | None = None, kinds: Iterable[MessageType] | None = None, since: int = 0
    ) -> list[WireMessage]:
        wanted = None if kinds is None else set(kinds)
        with self._lock:
            found = self._messages[since:]
        return [
            m
            for m in found
            if (node is None or m.edge_node_id == node) and (wanted is None or m.kind in wanted)
        ]

    def count(self) -> int:
        with self._lock:
            return len(self._messages)

    def wait_message(
        self, kind: MessageType, node: str = NODE, since: int = 0, timeout: float = TIMEOUT
    ) -> WireMessage:
        return wait_for(
            lambda: next(iter(self.messages(node, [kind], since)), None),
            lambda: f"{self.name}: no {kind.value} from {node} since message #{since}",
            timeout,
        )


# -- edge, server, recorder --------------------------------------------------------------------


class Recorder:
    """``record_to`` of the simulator: every value it produced, in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changes: list[TagChange] = []

    def __call__(self, change: TagChange) -> None:
        with self._lock:
            self._changes.append(change)

    def changes(self) -> list[TagChange]:
        with self._lock:
            return list(self._changes)

    def __len__(self) -> int:
        with self._lock:
            return len(self._changes)

    def recorded(self, group: str = GROUP, node: str = NODE) -> list[RecordedValue]:
        return [
            RecordedValue(f"{group}/{node}/{c.device_id}/{c.name}", c.ts_ms, _storable(c.value))
            for c in self.changes()
        ]


def _storable(value: Any) -> Any:
    return value.hex() if isinstance(value, bytes) else value


def mqtt(port: int, keepalive_s: int = KEEPALIVE_S) -> MqttSettings:
    return MqttSettings(port=port, keepalive_s=keepalive_s)


def edge_settings(
    tmp_path: Path,
    port: int,
    *,
    primary_host_id: str | None = None,
    fallback_ports: Iterable[int] = (),
    spool: Mapping[str, object] | None = None,
    simulator: Mapping[str, object] | None = None,
    poll_interval_s: float = 0.1,
    name: str = "edge",
) -> EdgeSettings:
    spool_settings = {
        "path": tmp_path / f"{name}-spool.db",
        "rolling_window_s": 0.0,
        **(spool or {}),
    }
    return EdgeSettings(
        group_id=GROUP,
        edge_node_id=NODE,
        primary_host_id=primary_host_id,
        poll_interval_s=poll_interval_s,
        mqtt=mqtt(port),
        fallback_brokers=[mqtt(p) for p in fallback_ports],
        spool=spool_settings,  # type: ignore[arg-type]
        simulator={
            "machines": 8,
            "tags_per_machine": 20,
            "time_scale": 30.0,
            "seed": 5,
            **(simulator or {}),
        },  # type: ignore[arg-type]
    )


def server_settings(tmp_path: Path, port: int, *, host_id: str = HOST_ID) -> ServerSettings:
    return ServerSettings(
        host_id=host_id,
        database_url=f"sqlite:///{tmp_path / 'andon.db'}",
        historian_spool_path=tmp_path / "historian-spool.db",
        mqtt=mqtt(port),
        http_port=0,
    )


class LiveWatch:
    """Listener on the live table: counts updates that went back in time for a tag."""

    def __init__(self) -> None:
        self._held: dict[str, int] = {}
        self.regressions: list[tuple[str, int, int]] = []
        self.updates = 0

    def __call__(self, changed: Iterable[LiveTag]) -> None:
        for tag in changed:
            self.updates += 1
            held = self._held.get(tag.path)
            if held is not None and tag.source_ts_ms < held:
                self.regressions.append((tag.path, held, tag.source_ts_ms))
            self._held[tag.path] = max(held or 0, tag.source_ts_ms)


def start_server(settings: ServerSettings, watch: LiveWatch | None = None) -> MesServer:
    server = MesServer(settings, serve_http=False)
    if watch is not None:
        server.live_tags.add_listener(watch)
    server.start()
    assert server.host.wait_online(TIMEOUT), "the server's host session never came online"
    return server


def start_edge(settings: EdgeSettings, recorder: Recorder) -> EdgeAgent:
    agent = EdgeAgent(settings, record_to=recorder)
    agent.start()
    return agent


# -- the end-of-test checks --------------------------------------------------------------------


@dataclass
class FlowResult:
    produced: int
    comparison: HistoryComparison
    historical_rows: int
    live_checked: int
    notes: dict[str, object] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"produced {self.produced}; {self.comparison.summary()}; historical rows "
            f"{self.historical_rows}; live tags checked {self.live_checked}"
        )


def quiesce(agent: EdgeAgent, timeout: float = TIMEOUT) -> None:
    """Stop producing (poller), then wait until the edge's spool is empty (all acked)."""
    agent.poller.stop()
    wait_for(
        lambda: agent.spool.stats().records == 0,
        lambda: f"the edge spool still holds {agent.spool.stats()} (status {agent.status()})",
        timeout,
    )


def wait_history(
    server: MesServer, recorded: list[RecordedValue], timeout: float = TIMEOUT
) -> None:
    keys = len({(r.tag, r.ts_ms) for r in recorded})

    def arrived() -> bool:
        server.ingest.drain(1.0)
        server.historian.flush(5.0)
        return server.store.count() >= keys

    wait_for(arrived, lambda: f"the history holds {server.store.count()} of {keys} values", timeout)
    assert server.ingest.drain(TIMEOUT)
    assert server.historian.flush(TIMEOUT)


def historical_keys(store: HistorianStore, tags: Iterable[str]) -> dict[tuple[str, int], bool]:
    out: dict[tuple[str, int], bool] = {}
    for tag in tags:
        for s in store.history(tag, 0, _END_OF_TIME_MS, limit=1_000_000):
            out[(tag, s.ts_ms)] = s.is_historical
    return out


def assert_exact_history(
    server: MesServer,
    recorder: Recorder,
    *,
    check_live: bool = True,
    watch: LiveWatch | None = None,
) -> FlowResult:
    """0 lost, 0 duplicated, same values; live table holds the newest produced value per tag."""
    recorded = recorder.recorded()
    wait_history(server, recorded)
    comparison = compare_with_history(server.store, recorded)
    assert comparison.exact, comparison.summary()
    tags = {r.tag for r in recorded}
    flags = historical_keys(server.store, tags)
    live_checked = 0
    if check_live:
        newest: dict[str, RecordedValue] = {}
        for r in recorded:
            if r.tag not in newest or r.ts_ms >= newest[r.tag].ts_ms:
                newest[r.tag] = r
        for tag, r in newest.items():
            live = server.live_tags.get(tag)
            assert live is not None, f"no live value for {tag}"
            assert live.source_ts_ms == r.ts_ms, (
                f"live {tag} holds ts {live.source_ts_ms}, the newest produced is {r.ts_ms}"
            )
            live_checked += 1
    if watch is not None:
        assert not watch.regressions, f"live values went back in time: {watch.regressions[:5]}"
    return FlowResult(
        produced=len(recorded),
        comparison=comparison,
        historical_rows=sum(flags.values()),
        live_checked=live_checked,
    )


def birth_keys(observer: WireObserver, node: str = NODE) -> set[tuple[str, int]]:
    """(tag, ts) of every value carried by a DBIRTH/NBIRTH (current values, not history)."""
    return {
        (
            f"{GROUP}/{node}/{v.device_id}/{v.name}" if v.device_id else f"{GROUP}/{node}/{v.name}",
            v.ts_ms,
        )
        for m in observer.messages(node, [MessageType.NBIRTH, MessageType.DBIRTH])
        for v in m.values
    }


def assert_replayed_historical(
    server: MesServer,
    produced: Iterable[RecordedValue],
    observer: WireObserver,
) -> int:
    """Every value in ``produced`` (made while the link was down) is stored ``is_historical``,
    except the ones a birth certificate carried as the current value. Returns how many."""
    produced = list(produced)
    flags = historical_keys(server.store, {r.tag for r in produced})
    born = birth_keys(observer)
    wrong = [
        (r.tag, r.ts_ms)
        for r in produced
        if (r.tag, r.ts_ms) not in born and not flags.get((r.tag, r.ts_ms), False)
    ]
    assert not wrong, f"{len(wrong)} replayed values not flagged historical, e.g. {wrong[:5]}"
    return sum(1 for r in produced if (r.tag, r.ts_ms) not in born)


def rebirth_ncmd(group: str = GROUP, node: str = NODE) -> tuple[str, bytes]:
    payload = Payload(
        timestamp=now_ms(),
        metrics=(Metric("Node Control/Rebirth", True, DataType.BOOLEAN, timestamp=now_ms()),),
    )
    return f"spBv1.0/{group}/NCMD/{node}", encode_payload(payload)
