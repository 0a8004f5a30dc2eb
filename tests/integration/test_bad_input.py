"""Bad Sparkplug input against a running server (DESIGN.md §4 item 2, §8; SPARKPLUG.md §6, §7).

A real ``MesServer`` on SQLite talks to its own Mosquitto. A raw test client plays the edge
(valid traffic from ``EdgeNodeSession``, bad traffic hand-crafted) and watches
``spBv1.0/+/NCMD/#`` for rebirth requests. For every kind of bad input the test checks that it
was counted (``GET /api/v1/edges`` or ``registry.unattributed``), logged, answered with a rebirth
request exactly where SPARKPLUG.md asks for one, that nothing reached the historian, and that the
server keeps working afterwards.

Nothing sleeps: every wait is a queue, ticket or drain with a deadline. "No NCMD was sent" is
proven by ordering: a later, known rebirth request (a *sentinel* node) must be the next NCMD
the observer receives, since the host publishes on one connection in order.
"""

from __future__ import annotations

import itertools
import logging
import queue
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from andon.domain.users import Role
from andon.mqtt.interface import MqttEndpoint
from andon.mqtt.paho_client import PahoBrokerClient
from andon.server.edge_registry import PROBLEM_KINDS
from andon.server.ingest import SparkplugIngest
from andon.server.mes_server import MesServer
from andon.settings import MqttSettings, ServerSettings
from andon.sparkplug import sparkplug_b_pb2 as pb
from andon.sparkplug.actions import Publish
from andon.sparkplug.codec import decode_payload, encode_payload
from andon.sparkplug.edge_node import REBIRTH_METRIC, BirthsRequired, EdgeNodeSession
from andon.sparkplug.model import DataType, Metric, Payload
from andon.testing.auth import authenticated_client
from andon.testing.brokers import MosquittoBroker

pytestmark = [pytest.mark.integration, pytest.mark.mosquitto]

TIMEOUT = 15.0
GROUP = "Plant"
DEVICE = "press"
INGEST_LOGGER = "andon.server.ingest"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _device_metrics() -> list[Metric]:
    return [
        Metric("Count", 10, DataType.INT32),
        Metric("Speed", 1.5, DataType.DOUBLE),
        Metric("Running", True, DataType.BOOLEAN),
    ]


class Observer:
    """MessageHandler + ConnectionListener of the raw test client."""

    def __init__(self) -> None:
        self.connected: queue.Queue[bool] = queue.Queue()
        self.commands: queue.Queue[tuple[str, bytes]] = queue.Queue()

    def __call__(self, topic: str, payload: bytes) -> None:
        self.commands.put((topic, payload))

    def on_connected(self) -> None:
        self.connected.put(True)

    def on_disconnected(self, reason: str) -> None:
        pass


class Rig:
    """The server, the raw client, and the waits the tests need."""

    def __init__(self, server: MesServer, client: PahoBrokerClient, observer: Observer) -> None:
        self.server = server
        self.client = client
        self.observer = observer
        self.http = authenticated_client(server.api, Role.OPERATOR)
        self.offered: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._ids = itertools.count(1)

    # -- traffic ------------------------------------------------------------------------------
    def send(self, topic: str, payload: bytes) -> None:
        """Publish (QoS 1), wait until the server received it, then until ingest processed it."""
        assert self.client.publish(topic, payload, qos=1).wait(TIMEOUT), f"no PUBACK for {topic}"
        deadline = time.monotonic() + TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"the server never received {topic}"
            try:
                if self.offered.get(timeout=remaining) == (topic, payload):
                    break
            except queue.Empty:
                continue
        assert self.server.ingest.drain(TIMEOUT)

    def send_all(self, publishes: list[Publish]) -> None:
        for publish in publishes:
            self.send(publish.topic, publish.payload)

    def edge(self, name: str) -> EdgeNodeSession:
        """A connected (not yet born) edge node session; its messages go through ``send``."""
        session = EdgeNodeSession(GROUP, name, bd_seq=None)
        session.next_will(_now_ms())
        session.on_connected(_now_ms())
        return session

    def born_edge(self, name: str) -> EdgeNodeSession:
        session = self.edge(name)
        self.send_all(session.births([], {DEVICE: _device_metrics()}, _now_ms()))
        return session

    def unique(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}"

    # -- observations -------------------------------------------------------------------------
    def settle(self) -> None:
        """Everything received is processed and everything submitted is committed."""
        assert self.server.ingest.drain(TIMEOUT)
        assert self.server.historian.flush(TIMEOUT)

    def stored(self) -> int:
        self.settle()
        return self.server.store.count()

    def counters(self, edge_node_id: str) -> dict[str, int]:
        """The node's problem counters as the API reports them (all zero if never seen)."""
        response = self.http.get("/api/v1/edges")
        assert response.status_code == 200
        for node in response.json():
            if (node["group_id"], node["edge_node_id"]) == (GROUP, edge_node_id):
                counters: dict[str, int] = node["counters"]
                return counters
        return dict.fromkeys(PROBLEM_KINDS, 0)

    def edge_view(self, edge_node_id: str) -> dict[str, Any]:
        for node in self.http.get("/api/v1/edges").json():
            if (node["group_id"], node["edge_node_id"]) == (GROUP, edge_node_id):
                view: dict[str, Any] = node
                return view
        raise AssertionError(f"{edge_node_id} not listed in /api/v1/edges")

    def next_command(self) -> tuple[str, Payload]:
        try:
            topic, payload = self.observer.commands.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError("no NCMD/DCMD was published") from None
        return topic, decode_payload(payload)

    def expect_rebirth_request(self, edge_node_id: str) -> Payload:
        topic, payload = self.next_command()
        assert topic == f"spBv1.0/{GROUP}/NCMD/{edge_node_id}"
        assert [(m.name, m.value) for m in payload.metrics] == [(REBIRTH_METRIC, True)]
        assert payload.seq is None  # commands carry no seq (§2)
        assert payload.timestamp is not None  # but a timestamp
        return payload

    def expect_no_command_so_far(self) -> None:
        """Prove by ordering that nothing was commanded before this point.

        A fresh node sends DDATA before any NBIRTH, which certainly triggers a rebirth request;
        since the host publishes in order on one connection, that must be the next command.
        """
        sentinel = self.unique("Sentinel")
        data = encode_payload(
            Payload(timestamp=_now_ms(), metrics=(Metric("x", 1.0, DataType.DOUBLE),), seq=0)
        )
        self.send(f"spBv1.0/{GROUP}/DDATA/{sentinel}/{DEVICE}", data)
        self.expect_rebirth_request(sentinel)

    def assert_still_works(self) -> None:
        """A well-behaved node's birth and data are stored and shown live."""
        name = self.unique("Healthy")
        edge = self.born_edge(name)
        ts = _now_ms() + 1
        self.send_all(
            [edge.data(DEVICE, [Metric("Speed", 42.25, DataType.DOUBLE, timestamp=ts)], ts)]
        )
        self.settle()
        path = f"{GROUP}/{name}/{DEVICE}/Speed"
        values = [(s.ts_ms, s.value) for s in self.server.store.history(path, ts, ts + 1)]
        assert values == [(ts, 42.25)]
        live = self.http.get("/api/v1/tags", params={"prefix": path}).json()
        assert [(t["path"], t["value"], t["quality"]) for t in live] == [(path, 42.25, "GOOD")]
        assert self.edge_view(name)["online"] is True
        assert set(self.counters(name).values()) == {0}


@pytest.fixture
def rig(mosquitto_binary: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    broker = MosquittoBroker(data_dir=tmp_path / "mosquitto", binary=mosquitto_binary)
    broker.start()
    offered: queue.Queue[tuple[str, bytes]] = queue.Queue()
    original_offer = SparkplugIngest.offer

    def recording_offer(
        self: SparkplugIngest, topic: str, payload: bytes, *a: Any, **k: Any
    ) -> None:
        original_offer(self, topic, payload, *a, **k)
        offered.put((topic, payload))

    # Patched on the class before the server binds it: every received message is reported.
    monkeypatch.setattr(SparkplugIngest, "offer", recording_offer)
    server: MesServer | None = None
    client: PahoBrokerClient | None = None
    try:
        settings = ServerSettings(
            host_id="badinput",
            database_url=f"sqlite:///{tmp_path / 'andon.db'}",
            mqtt=MqttSettings(host="127.0.0.1", port=broker.port),
        )
        server = MesServer(settings, serve_http=False)
        observer = Observer()
        client = PahoBrokerClient(
            MqttEndpoint(port=broker.port, client_id="bad-input-test"), observer, observer
        )
        rig = Rig(server, client, observer)
        rig.offered = offered
        server.start()
        assert server.host.wait_online(TIMEOUT), "host application did not come online"
        client.start()
        assert observer.connected.get(timeout=TIMEOUT)
        assert client.subscribe([("spBv1.0/+/NCMD/#", 1)])
        yield rig
    finally:
        if client is not None:
            client.stop()
        if server is not None:
            server.stop()
        broker.stop()


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    kinds = set(before) | set(after)
    return {
        k: after.get(k, 0) - before.get(k, 0) for k in kinds if after.get(k, 0) != before.get(k, 0)
    }


def _warnings(caplog: pytest.LogCaptureFixture, kind: str, who: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == INGEST_LOGGER
        and r.levelno >= logging.WARNING
        and f"sparkplug {kind} from {who}:" in r.getMessage()
    ]


def _garbage(_: int) -> bytes:
    return b"\xff\xff\xff not a protobuf"


def _truncated(seq: int) -> bytes:
    whole = encode_payload(
        Payload(
            timestamp=_now_ms(), metrics=(Metric(None, 3.0, DataType.DOUBLE, alias=1),), seq=seq
        ),
        omit_datatypes=True,
    )
    return whole[:-3]


def _metric_without_value(seq: int) -> bytes:
    message = pb.Payload(timestamp=_now_ms(), seq=seq)
    message.metrics.add(alias=1)  # neither a value nor is_null
    return message.SerializeToString()


def _unknown_datatype(seq: int) -> bytes:
    message = pb.Payload(timestamp=_now_ms(), seq=seq)
    message.metrics.add(alias=1, datatype=4711, double_value=1.0)
    return message.SerializeToString()


@pytest.mark.parametrize(
    "make_bad",
    [_garbage, _truncated, _metric_without_value, _unknown_datatype],
    ids=["garbage", "truncated", "metric-without-value", "unknown-datatype"],
)
def test_malformed_payload_from_a_known_node(
    rig: Rig, caplog: pytest.LogCaptureFixture, make_bad: Callable[[int], bytes]
) -> None:
    edge = rig.born_edge("Filler")
    stored = rig.stored()
    before = rig.counters("Filler")

    rig.send(f"spBv1.0/{GROUP}/DDATA/Filler/{DEVICE}", make_bad(2))

    assert _delta(before, rig.counters("Filler")) == {
        "malformed_payload": 1,
        "rebirth_requested": 1,
    }
    assert _warnings(caplog, "malformed_payload", f"{GROUP}/Filler")
    assert _warnings(caplog, "rebirth_requested", f"{GROUP}/Filler")
    assert rig.stored() == stored
    # The host marked the node offline and its values stale at once (§6 reference behaviour).
    assert rig.edge_view("Filler")["online"] is False
    tags = rig.http.get("/api/v1/tags", params={"prefix": f"{GROUP}/Filler/"}).json()
    assert tags
    assert {t["quality"] for t in tags} == {"STALE"}

    # The NCMD reaches the edge, which answers with births; the node is back and stores data.
    topic, raw = rig.observer.commands.get(timeout=TIMEOUT)
    rig.expect_no_command_so_far()  # ... and there was exactly one request
    assert topic == f"spBv1.0/{GROUP}/NCMD/Filler"
    assert decode_payload(raw).metrics[0].name == REBIRTH_METRIC
    assert edge.on_message(topic, raw, _now_ms()) == [BirthsRequired()]
    rig.send_all(edge.births([], {DEVICE: _device_metrics()}, _now_ms()))
    ts = _now_ms() + 5
    rig.send_all([edge.data(DEVICE, [Metric("Count", 11, DataType.INT32, timestamp=ts)], ts)])
    rig.settle()
    assert rig.edge_view("Filler")["online"] is True
    assert [
        s.value for s in rig.server.store.history(f"{GROUP}/Filler/{DEVICE}/Count", ts, ts + 1)
    ] == [11]
    rig.assert_still_works()


def test_malformed_payload_from_an_unknown_node_is_counted_on_that_node(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    stored = rig.stored()
    rig.send(f"spBv1.0/{GROUP}/NDATA/Stranger", _garbage(0))
    assert _delta(dict.fromkeys(PROBLEM_KINDS, 0), rig.counters("Stranger")) == {
        "malformed_payload": 1,
        "rebirth_requested": 1,
    }
    assert _warnings(caplog, "malformed_payload", f"{GROUP}/Stranger")
    rig.expect_rebirth_request("Stranger")
    assert rig.stored() == stored
    rig.assert_still_works()


@pytest.mark.parametrize(
    "topic",
    [
        "spBv1.0/G",
        "spBv1.0/G/NDATA",
        "spBv1.0//NDATA/N",
        "spBv1.0/G/XDATA/N",
        "spBv1.0/G/DDATA/N",
        "spBv1.0/G/NDATA/N/dev",
        "spBv1.0/G/DDATA/N/dev/extra",
        "spBv1.0/STATE",
    ],
)
def test_topic_outside_the_namespace_is_counted_unattributed(
    rig: Rig, caplog: pytest.LogCaptureFixture, topic: str
) -> None:
    stored = rig.stored()
    before = dict(rig.server.edges.unattributed)
    nodes_before = rig.http.get("/api/v1/edges").json()
    payload = encode_payload(
        Payload(timestamp=_now_ms(), metrics=(Metric("x", 1.0, DataType.DOUBLE),), seq=0)
    )

    rig.send(topic, payload)

    assert _delta(before, dict(rig.server.edges.unattributed)) == {"bad_topic": 1}
    assert rig.http.get("/api/v1/edges").json() == nodes_before  # no node was invented
    assert _warnings(caplog, "bad_topic", "?/?")
    assert rig.stored() == stored
    rig.expect_no_command_so_far()  # no rebirth: there is no node to ask
    rig.assert_still_works()


def test_topic_outside_spbv1_is_not_even_received(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """``foo/bar`` never reaches the host (it subscribes to spBv1.0/# only); if it did, it would
    be counted as a bad topic without a rebirth request."""
    stored = rig.stored()
    before = dict(rig.server.edges.unattributed)
    assert rig.client.publish("foo/bar", b"\x08\x01", qos=1).wait(TIMEOUT)
    rig.expect_no_command_so_far()  # the sentinel went through the same broker after foo/bar
    assert rig.server.edges.unattributed == before
    assert all(topic != "foo/bar" for topic, _ in list(rig.offered.queue))

    # Offered straight into the pipeline (as a broader subscription would), it is a bad topic.
    rig.server.ingest.offer("foo/bar", b"\x08\x01")
    rig.settle()
    assert _delta(before, dict(rig.server.edges.unattributed)) == {"bad_topic": 1}
    assert _warnings(caplog, "bad_topic", "?/?")
    assert rig.stored() == stored
    rig.expect_no_command_so_far()
    rig.assert_still_works()


def test_unknown_alias_after_a_valid_birth(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    edge = rig.born_edge("Capper")
    stored = rig.stored()
    before = rig.counters("Capper")
    valid = edge.data(DEVICE, [Metric("Speed", 2.5, DataType.DOUBLE)], _now_ms())
    payload = decode_payload(valid.payload)
    # A valid metric plus an alias no birth defined: the message is refused as a whole.
    bad = Payload(
        timestamp=payload.timestamp,
        seq=payload.seq,
        metrics=(*payload.metrics, Metric(None, 7.0, DataType.DOUBLE, alias=999)),
    )

    rig.send(valid.topic, encode_payload(bad, omit_datatypes=True))

    assert _delta(before, rig.counters("Capper")) == {"unknown_alias": 1, "rebirth_requested": 1}
    assert _warnings(caplog, "unknown_alias", f"{GROUP}/Capper")
    assert rig.stored() == stored  # not even the valid metric: never a partial write
    rig.expect_rebirth_request("Capper")
    rig.expect_no_command_so_far()
    rig.assert_still_works()


def test_metric_name_absent_from_the_birth(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    rig.born_edge("Labeler")
    stored = rig.stored()
    before = rig.counters("Labeler")
    data = Payload(timestamp=_now_ms(), seq=2, metrics=(Metric("Ghost", 1.0, DataType.DOUBLE),))
    rig.send(f"spBv1.0/{GROUP}/DDATA/Labeler/{DEVICE}", encode_payload(data))
    assert _delta(before, rig.counters("Labeler")) == {"unknown_metric": 1, "rebirth_requested": 1}
    assert _warnings(caplog, "unknown_metric", f"{GROUP}/Labeler")
    assert rig.stored() == stored
    rig.expect_rebirth_request("Labeler")
    rig.assert_still_works()


@pytest.mark.parametrize("kind", ["DDATA", "NDATA", "DBIRTH", "DDEATH"])
def test_data_before_any_nbirth(rig: Rig, caplog: pytest.LogCaptureFixture, kind: str) -> None:
    edge = rig.edge("Wrapper")
    stored = rig.stored()
    before = rig.counters("Wrapper")
    topic = f"spBv1.0/{GROUP}/{kind}/Wrapper" + ("" if kind == "NDATA" else f"/{DEVICE}")
    metrics = (Metric("Speed", 3.5, DataType.DOUBLE),) if kind != "DDEATH" else ()
    rig.send(topic, encode_payload(Payload(timestamp=_now_ms(), metrics=metrics, seq=1)))

    assert _delta(before, rig.counters("Wrapper")) == {"before_birth": 1, "rebirth_requested": 1}
    assert _warnings(caplog, "before_birth", f"{GROUP}/Wrapper")
    assert rig.stored() == stored
    assert rig.http.get("/api/v1/tags", params={"prefix": f"{GROUP}/Wrapper/"}).json() == []
    topic_cmd, raw = rig.observer.commands.get(timeout=TIMEOUT)
    assert topic_cmd == f"spBv1.0/{GROUP}/NCMD/Wrapper"
    # The edge answers the request with its births; then its data is accepted.
    assert edge.on_message(topic_cmd, raw, _now_ms()) == [BirthsRequired()]
    rig.send_all(edge.births([], {DEVICE: _device_metrics()}, _now_ms()))
    rig.settle()
    assert rig.server.store.count() > stored
    assert rig.edge_view("Wrapper")["online"] is True
    rig.assert_still_works()


def _string_for_double(aliases: dict[str, int]) -> Metric:
    return Metric(None, "fast", DataType.STRING, alias=aliases["Speed"])  # untyped on the wire


def _float_for_boolean(aliases: dict[str, int]) -> Metric:
    return Metric(None, 0.5, DataType.DOUBLE, alias=aliases["Running"])


def _string_for_int32(aliases: dict[str, int]) -> Metric:
    return Metric(None, "ten", DataType.STRING, alias=aliases["Count"])


def _declared_datatype_differs(aliases: dict[str, int]) -> Metric:
    return Metric(None, 1.0, DataType.FLOAT, alias=aliases["Speed"])  # born Double, sent Float


@pytest.mark.parametrize(
    ("make_metric", "typed"),
    [
        (_string_for_double, False),
        (_float_for_boolean, False),
        (_string_for_int32, False),
        (_declared_datatype_differs, True),
    ],
    ids=["string-for-double", "float-for-boolean", "string-for-int32", "float-declared-for-double"],
)
def test_metric_value_of_the_wrong_type(
    rig: Rig,
    caplog: pytest.LogCaptureFixture,
    make_metric: Callable[[dict[str, int]], Metric],
    typed: bool,
) -> None:
    edge = rig.born_edge("Mixer")
    stored = rig.stored()
    before = rig.counters("Mixer")
    valid = edge.data(
        DEVICE,
        [Metric("Count", 12, DataType.INT32), Metric("Speed", 2.0, DataType.DOUBLE)],
        _now_ms(),
    )
    payload = decode_payload(valid.payload)
    aliases = {"Count": 0, "Speed": 1, "Running": 2}  # the edge numbers device metrics in order
    assert [m.alias for m in payload.metrics] == [aliases["Count"], aliases["Speed"]]
    bad = Payload(
        timestamp=payload.timestamp,
        seq=payload.seq,
        metrics=(payload.metrics[0], make_metric(aliases)),
    )

    rig.send(valid.topic, encode_payload(bad, omit_datatypes=not typed))

    assert _delta(before, rig.counters("Mixer")) == {"malformed_payload": 1, "rebirth_requested": 1}
    assert _warnings(caplog, "malformed_payload", f"{GROUP}/Mixer")
    assert rig.stored() == stored  # the valid Count in the same message is not written either
    assert rig.server.live_tags.get(f"{GROUP}/Mixer/{DEVICE}/Count").value == 10  # type: ignore[union-attr]
    rig.expect_rebirth_request("Mixer")
    rig.expect_no_command_so_far()
    rig.assert_still_works()


def test_rebirth_requests_are_debounced_per_node(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """Two bad messages within 5 s (the default debounce): one NCMD; other nodes unaffected."""
    assert rig.server.session.rebirth_debounce_ms == 5000
    rig.born_edge("Palletizer")
    stored = rig.stored()
    before = rig.counters("Palletizer")
    topic = f"spBv1.0/{GROUP}/DDATA/Palletizer/{DEVICE}"
    started = time.monotonic()

    rig.send(topic, _garbage(2))
    rig.send(topic, _garbage(3))
    # Now offline after the request: data is before_birth, and still within the debounce.
    later = Payload(timestamp=_now_ms(), seq=4, metrics=(Metric("Speed", 9.0, DataType.DOUBLE),))
    rig.send(topic, encode_payload(later))
    assert time.monotonic() - started < 5.0, "too slow to test the 5 s debounce"

    assert _delta(before, rig.counters("Palletizer")) == {
        "malformed_payload": 2,
        "before_birth": 1,
        "rebirth_requested": 1,
    }
    assert _warnings(caplog, "rebirth_requested", f"{GROUP}/Palletizer")
    assert rig.stored() == stored
    rig.expect_rebirth_request("Palletizer")
    rig.expect_no_command_so_far()  # the second and third bad messages asked for nothing
    rig.assert_still_works()
