"""The REST API and the machines page, through FastAPI's TestClient.

The API runs against an ``ApiContext`` built by the test: an in-memory historian store, a live
tag table and an edge registry filled here. ``/metrics`` is checked on a real ``MesServer``
(in-memory broker, SQLite in tmp_path) because it collects from the live server objects.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from andon import __version__
from andon.api import ApiContext, create_app
from andon.api.tags import MAX_BUCKETS
from andon.domain.users import Role
from andon.mqtt.interface import MqttEndpoint
from andon.server.edge_registry import PROBLEM_KINDS, EdgeRegistry
from andon.server.live_tags import LiveTagTable, LiveUpdate
from andon.server.mes_server import MesServer
from andon.settings import ServerSettings
from andon.sparkplug.codec import encode_payload
from andon.sparkplug.edge_node import EdgeNodeSession
from andon.sparkplug.model import DataType, Metric
from andon.storage.types import Sample
from andon.testing.auth import authenticated_client, user_service_for_tests
from andon.testing.memory_broker import InMemoryBroker, InMemoryBrokerClient
from andon.testing.memory_historian import InMemoryHistorianStore

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
T0_ISO = "2026-01-01T00:00:00.000+00:00"
SPEED = "Plant/Edge1/Filler1/Speed"
STATE = "Plant/Edge1/Filler1/State/Name"


class Rig:
    """The app on in-memory data; ``http`` is logged in as an operator (reads need any role)."""

    def __init__(self, directory: Path) -> None:
        self.users = user_service_for_tests(f"sqlite:///{directory / 'users.db'}")
        self.store = InMemoryHistorianStore()
        self.live = LiveTagTable()
        self.edges = EdgeRegistry()
        self.components: dict[str, dict[str, Any]] = {
            "mqtt": {"ok": True, "broker": "127.0.0.1:1883"},
            "database": {"ok": True, "dialect": "memory"},
        }
        self.app: FastAPI = create_app(
            ApiContext(
                live_tags=self.live,
                history=self.store,
                edges=self.edges,
                health=lambda: self.components,
                metrics_text=lambda: b"# test\n",
                users=self.users,
                site_name="Testplant",
            )
        )
        self.http = authenticated_client(self.app, Role.OPERATOR)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path)
    # Speed: one sample per second for 10 s, values 0.0, 1.5, 3.0, ...
    rig.store.write_batch(
        [Sample(SPEED, T0 + i * 1000, i * 1.5, datatype=int(DataType.DOUBLE)) for i in range(10)]
    )
    rig.store.write_batch(
        [
            Sample(STATE, T0 + 500, "Running", datatype=int(DataType.STRING)),
            Sample(STATE, T0 + 2500, "Stopped", quality=0, is_historical=True),
        ]
    )
    rig.live.apply(
        [
            LiveUpdate(SPEED, 13.5, int(DataType.DOUBLE), "GOOD", T0 + 9000, T0 + 9010),
            LiveUpdate(STATE, "Running", int(DataType.STRING), "GOOD", T0 + 500, T0 + 520),
            LiveUpdate("Plant/Edge1/Capper2/Count", 7, int(DataType.INT64), "BAD", T0, T0 + 1),
            LiveUpdate("Plant/Edge1/Andon/Spool/Depth", 0, int(DataType.INT64), "GOOD", T0, T0),
            LiveUpdate("Other/Edge9/Blob/Raw", b"\x00\xff", int(DataType.BYTES), "GOOD", T0, T0),
        ]
    )
    # The machines page shows devices the registry knows from their DBIRTH.
    rig.edges.node_birth("Plant", "Edge1", 0, 1, T0)
    rig.edges.device_birth("Plant", "Edge1", "Filler1", 2, T0)
    rig.edges.device_birth("Plant", "Edge1", "Capper2", 1, T0)
    rig.edges.node_birth("Other", "Edge9", 0, 0, T0)
    rig.edges.device_birth("Other", "Edge9", "Blob", 1, T0)
    yield rig
    rig.users.repository.close()


def _history(rig: Rig, **params: Any) -> Any:
    return rig.http.get("/api/v1/tags/history", params=params)


# -- /api/v1/tags ---------------------------------------------------------------------------


def test_live_tags_lists_every_tag_sorted(api: Rig) -> None:
    response = api.http.get("/api/v1/tags")
    assert response.status_code == 200
    body = response.json()
    assert [t["path"] for t in body] == sorted(t["path"] for t in body)
    assert len(body) == 5
    speed = next(t for t in body if t["path"] == SPEED)
    assert speed == {
        "path": SPEED,
        "value": 13.5,
        "datatype": int(DataType.DOUBLE),
        "quality": "GOOD",
        "source_time": "2026-01-01T00:00:09.000+00:00",
        "receive_time": "2026-01-01T00:00:09.010+00:00",
        "online": True,
    }
    blob = next(t for t in body if t["path"] == "Other/Edge9/Blob/Raw")
    assert blob["value"] == "AP8="  # bytes are base64 in JSON


def test_live_tags_prefix_filters_and_reflects_stale(api: Rig) -> None:
    api.live.mark_stale("Plant/Edge1/Filler1", None, T0 + 20_000)
    body = api.http.get("/api/v1/tags", params={"prefix": "Plant/Edge1/Filler1/"}).json()
    assert [t["path"] for t in body] == [SPEED, STATE]
    assert {(t["quality"], t["online"]) for t in body} == {("STALE", False)}
    assert api.http.get("/api/v1/tags", params={"prefix": "Nowhere/"}).json() == []


# -- /api/v1/tags/history: raw ----------------------------------------------------------------


def test_history_raw_values_in_order_start_inclusive_end_exclusive(api: Rig) -> None:
    response = _history(api, path=SPEED, start=T0 + 2000, end=T0 + 5000)
    assert response.status_code == 200
    body = response.json()
    assert body["path"] == SPEED
    assert body["start"] == "2026-01-01T00:00:02.000+00:00"
    assert body["end"] == "2026-01-01T00:00:05.000+00:00"
    assert body["bucket_ms"] is None
    assert body["buckets"] is None
    assert body["truncated"] is False
    assert [(s["ts_ms"], s["value"]) for s in body["samples"]] == [
        (T0 + 2000, 3.0),
        (T0 + 3000, 4.5),
        (T0 + 4000, 6.0),
    ]
    first = body["samples"][0]
    assert first == {
        "time": "2026-01-01T00:00:02.000+00:00",
        "ts_ms": T0 + 2000,
        "value": 3.0,
        "quality": 192,
        "is_historical": False,
    }


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-01-01T00:00:02Z", "2026-01-01T00:00:05Z"),
        ("2026-01-01T00:00:02.000Z", "2026-01-01T00:00:05.000+00:00"),
        ("2026-01-01T01:00:02+01:00", "2026-01-01T00:00:05"),  # offset; naive = UTC
        (str(T0 + 2000), "2026-01-01T00:00:05Z"),  # epoch ms and ISO mixed
        (f" {T0 + 2000} ", str(T0 + 5000)),
    ],
)
def test_history_accepts_iso_and_epoch_ms(api: Rig, start: str, end: str) -> None:
    body = _history(api, path=SPEED, start=start, end=end).json()
    assert [s["ts_ms"] for s in body["samples"]] == [T0 + 2000, T0 + 3000, T0 + 4000]


def test_history_millisecond_precision_of_iso_input(api: Rig) -> None:
    body = _history(
        api, path=SPEED, start="2026-01-01T00:00:03.999Z", end="2026-01-01T00:00:04.001Z"
    ).json()
    assert [s["ts_ms"] for s in body["samples"]] == [T0 + 4000]
    body = _history(
        api, path=SPEED, start="2026-01-01T00:00:04.001Z", end="2026-01-01T00:00:05.000Z"
    ).json()
    assert body["samples"] == []


def test_history_accepts_the_whole_representable_range(api: Rig) -> None:
    body = _history(api, path=SPEED, start="0001-01-01T00:00:00Z", end="9999-12-31T23:59:59.999Z")
    assert body.status_code == 200
    assert body.json()["start"] == "0001-01-01T00:00:00.000+00:00"
    assert body.json()["end"] == "9999-12-31T23:59:59.999+00:00"
    assert len(body.json()["samples"]) == 10


def test_history_quality_historical_flag_and_strings(api: Rig) -> None:
    body = _history(api, path=STATE, start=T0, end=T0 + 10_000).json()
    assert [(s["value"], s["quality"], s["is_historical"]) for s in body["samples"]] == [
        ("Running", 192, False),
        ("Stopped", 0, True),
    ]


def test_history_limit_sets_truncated(api: Rig) -> None:
    body = _history(api, path=SPEED, start=T0, end=T0 + 10_000, limit=4).json()
    assert [s["ts_ms"] for s in body["samples"]] == [T0 + i * 1000 for i in range(4)]
    assert body["truncated"] is True
    exact = _history(api, path=SPEED, start=T0, end=T0 + 10_000, limit=10).json()
    assert len(exact["samples"]) == 10
    assert exact["truncated"] is False


def test_history_of_unknown_tag_is_empty(api: Rig) -> None:
    body = _history(api, path="No/Such/Tag", start=T0, end=T0 + 10_000).json()
    assert body["samples"] == []
    assert body["truncated"] is False


# -- /api/v1/tags/history: buckets ------------------------------------------------------------


def test_history_buckets_aggregate_in_order(api: Rig) -> None:
    response = _history(api, path=SPEED, start=T0, end=T0 + 10_000, bucket="4s")
    assert response.status_code == 200
    body = response.json()
    assert body["bucket_ms"] == 4000
    assert body["samples"] is None
    # Buckets are epoch-aligned: T0 is a multiple of 4000 ms.
    assert [
        (b["start_ms"], b["count"], b["min"], b["max"], b["avg"], b["last"])
        for b in body["buckets"]
    ] == [
        (T0, 4, 0.0, 4.5, 2.25, 4.5),
        (T0 + 4000, 4, 6.0, 10.5, 8.25, 10.5),
        (T0 + 8000, 2, 12.0, 13.5, 12.75, 13.5),
    ]
    assert body["buckets"][0]["start"] == T0_ISO


def test_history_buckets_respect_the_half_open_range(api: Rig) -> None:
    body = _history(api, path=SPEED, start=T0 + 1000, end=T0 + 9000, bucket="1m").json()
    assert [(b["start_ms"], b["count"], b["min"], b["max"]) for b in body["buckets"]] == [
        (T0, 8, 1.5, 12.0)  # 1.5 (t=1 s) .. 12.0 (t=8 s); t=9 s is excluded
    ]


@pytest.mark.parametrize(
    ("bucket", "ms"),
    [
        ("500ms", 500),
        ("10s", 10_000),
        ("1m", 60_000),
        ("1min", 60_000),
        ("2h", 7_200_000),
        ("1d", 86_400_000),
        ("250", 250),
        ("1.5s", 1500),
    ],
)
def test_bucket_syntax(api: Rig, bucket: str, ms: int) -> None:
    body = _history(api, path=SPEED, start=T0, end=T0 + 600_000, bucket=bucket).json()
    assert body["bucket_ms"] == ms


def test_bucketed_string_tag_has_count_and_last_only(api: Rig) -> None:
    body = _history(api, path=STATE, start=T0, end=T0 + 10_000, bucket="10s").json()
    assert [(b["count"], b["min"], b["avg"], b["last"]) for b in body["buckets"]] == [
        (2, None, None, "Stopped")
    ]


# -- invalid input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"start": "yesterday", "end": T0}, "not a time: 'yesterday'"),
        ({"start": T0, "end": "2026-13-01T00:00:00Z"}, "not a time"),
        ({"start": "", "end": T0}, "not a time"),
        ({"start": T0, "end": T0}, "end must be after start"),
        ({"start": T0 + 1, "end": T0}, "end must be after start"),
        ({"start": T0, "end": T0 + 1000, "bucket": "5x"}, "not a duration: '5x'"),
        ({"start": T0, "end": T0 + 1000, "bucket": "0s"}, "duration must be positive"),
        ({"start": T0, "end": T0 + 1000, "bucket": "-1s"}, "not a duration"),
        ({"start": T0, "end": T0 + 1000, "bucket": "0.0001ms"}, "duration must be positive"),
        (
            {"start": T0, "end": T0 + 86_400_000, "bucket": "1s"},
            f"more than {MAX_BUCKETS} buckets",
        ),
        ({"start": 10**17, "end": 10**17 + 1}, "out of range"),
        ({"start": -(10**17), "end": T0}, "out of range"),
        ({"start": T0, "end": str(10**30)}, "out of range"),
        ({"start": T0, "end": "9999-12-31T23:59:59-05:00"}, "out of range"),
        ({"start": T0, "end": T0 + 1000, "bucket": "99999999999999999999d"}, "too long"),
        ({"start": T0, "end": T0 + 1000, "bucket": "1" + "0" * 400}, "too long"),
        ({"start": "\u0661\u0662", "end": T0}, "not a time"),  # non-ASCII digits
    ],
)
def test_invalid_history_requests_are_422_with_a_clear_detail(
    api: Rig, params: dict[str, Any], detail: str
) -> None:
    response = _history(api, path=SPEED, **params)
    assert response.status_code == 422, response.text
    assert detail in response.json()["detail"]


@pytest.mark.parametrize("missing", ["path", "start", "end"])
def test_missing_history_parameter_is_422_naming_it(api: Rig, missing: str) -> None:
    params = {"path": SPEED, "start": str(T0), "end": str(T0 + 1000)}
    del params[missing]
    response = _history(api, **params)
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert [(e["loc"], e["type"]) for e in errors] == [(["query", missing], "missing")]


@pytest.mark.parametrize("limit", ["0", "100001", "many"])
def test_invalid_limit_is_422(api: Rig, limit: str) -> None:
    response = _history(api, path=SPEED, start=T0, end=T0 + 1000, limit=limit)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "limit"]


# -- /api/v1/edges ----------------------------------------------------------------------------


def test_edges_shape(tmp_path: Path) -> None:
    api = Rig(tmp_path)
    assert api.http.get("/api/v1/edges").json() == []
    api.edges.node_birth("Plant", "Edge1", 3, 5, T0)
    api.edges.device_birth("Plant", "Edge1", "Filler1", 4, T0 + 1)
    api.edges.device_birth("Plant", "Edge1", "Capper2", 2, T0 + 2)
    api.edges.device_death("Plant", "Edge1", "Capper2", T0 + 3)
    api.edges.seen("Plant", "Edge1", T0 + 4)
    api.edges.spool_report("Plant", "Edge1", {"Depth": 12, "DroppedRecords": 0})
    api.edges.problem("seq_gap", "Plant", "Edge1")
    api.edges.problem("seq_gap", "Plant", "Edge1")
    api.edges.problem("malformed_payload", "Plant", "Edge0")
    api.edges.problem("bad_topic", None, None)  # unattributed: not a node
    api.edges.node_death("Plant", "Edge0", T0 + 5)

    response = api.http.get("/api/v1/edges")
    assert response.status_code == 200
    edge0, edge1 = response.json()
    assert edge1 == {
        "group_id": "Plant",
        "edge_node_id": "Edge1",
        "online": True,
        "bd_seq": 3,
        "last_birth": "2026-01-01T00:00:00.000+00:00",
        "last_death": None,
        "last_seen": "2026-01-01T00:00:00.004+00:00",
        "metric_count": 5,
        "devices": [
            {
                "device_id": "Capper2",
                "online": False,
                "last_birth": "2026-01-01T00:00:00.002+00:00",
                "last_death": "2026-01-01T00:00:00.003+00:00",
                "metric_count": 2,
            },
            {
                "device_id": "Filler1",
                "online": True,
                "last_birth": "2026-01-01T00:00:00.001+00:00",
                "last_death": None,
                "metric_count": 4,
            },
        ],
        "counters": {**dict.fromkeys(PROBLEM_KINDS, 0), "seq_gap": 2},
        "spool": {"Depth": 12, "DroppedRecords": 0},
    }
    assert edge0["edge_node_id"] == "Edge0"
    assert edge0["online"] is False
    assert edge0["bd_seq"] is None
    assert edge0["last_death"] == "2026-01-01T00:00:00.005+00:00"
    assert edge0["counters"]["malformed_payload"] == 1
    assert api.edges.unattributed["bad_topic"] == 1


# -- /api/v1/health ---------------------------------------------------------------------------


def test_health_ok_is_200(api: Rig) -> None:
    response = api.http.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "version": __version__,
        "components": api.components,
    }


@pytest.mark.parametrize("failing", ["mqtt", "database"])
def test_health_degraded_is_503(api: Rig, failing: str) -> None:
    api.components[failing]["ok"] = False
    response = api.http.get("/api/v1/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["components"][failing]["ok"] is False


def test_health_component_without_ok_counts_as_not_ok(api: Rig) -> None:
    api.components["historian"] = {"queued": 3}
    assert api.http.get("/api/v1/health").status_code == 503


# -- /openapi.json ----------------------------------------------------------------------------


def test_openapi_lists_the_endpoints(api: Rig) -> None:
    response = api.http.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["info"]["title"] == "Andon"
    assert document["info"]["version"] == __version__
    paths = document["paths"]
    for path in (
        "/api/v1/tags",
        "/api/v1/tags/history",
        "/api/v1/edges",
        "/api/v1/health",
        "/metrics",
    ):
        assert "get" in paths[path], path
    history_params = {
        p["name"]: p["required"] for p in paths["/api/v1/tags/history"]["get"]["parameters"]
    }
    assert history_params == {
        "path": True,
        "start": True,
        "end": True,
        "bucket": False,
        "limit": False,
    }
    assert "503" in paths["/api/v1/health"]["get"]["responses"]
    # The HTML pages are not API.
    assert "/" not in paths
    assert "/fragments/machines" not in paths


# -- web --------------------------------------------------------------------------------------


def test_machines_page_shows_machines_from_the_live_table(api: Rig) -> None:
    response = api.http.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert "<title>Machines · Testplant · Andon</title>" in html
    assert '<script src="/static/vendor/htmx-2.0.11.min.js"></script>' in html
    assert '<div id="machines" hx-get="/fragments/machines"' in html
    assert "<h2>Plant/Edge1</h2>" in html
    assert 'data-device="Filler1"' in html
    assert 'data-device="Capper2"' in html
    assert 'data-device="Blob"' in html
    assert f'data-path="{SPEED}">13.50<' in html
    assert "state-running" in html  # the state badge of Filler1
    assert "Andon/Spool" not in html  # node metrics are not machines


def test_machines_page_marks_stale_machines(api: Rig) -> None:
    api.live.mark_stale("Plant/Edge1/Filler1", None, T0 + 20_000)
    html = api.http.get("/fragments/machines").text
    assert 'class="card offline" data-device="Filler1"' in html
    assert 'class="card online" data-device="Capper2"' in html
    assert "OFFLINE / STALE" in html


def test_node_metric_with_a_slash_is_not_a_machine(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.edges.node_birth("Plant", "Edge1", 0, 2, T0)
    rig.live.apply(
        [
            LiveUpdate("Plant/Edge1/Andon/Spool/Depth", 3, int(DataType.INT64), "GOOD", T0, T0),
            LiveUpdate("Plant/Edge1/Properties/Make", "x", int(DataType.STRING), "GOOD", T0, T0),
        ]
    )
    html = rig.http.get("/fragments/machines").text
    assert "data-device" not in html
    assert "No machine has reported yet" in html


def test_machines_page_without_data_says_so(tmp_path: Path) -> None:
    html = Rig(tmp_path).http.get("/").text
    assert "No machine has reported yet" in html


def test_fragment_is_only_the_machines_block(api: Rig) -> None:
    response = api.http.get("/fragments/machines")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text.strip()
    assert html.startswith('<div id="machines"')
    assert html.endswith("</div>")
    for outside in ("<html", "<head", "<body", "<title", "<h1", "topbar"):
        assert outside not in html
    assert 'data-device="Filler1"' in html


def test_vendored_htmx_is_served(api: Rig) -> None:
    response = api.http.get("/static/vendor/htmx-2.0.11.min.js")
    assert response.status_code == 200
    assert "javascript" in response.headers["content-type"]
    assert response.text.startswith("var htmx=")
    assert len(response.content) > 10_000
    assert api.http.get("/static/andon.css").status_code == 200
    assert api.http.get("/static/vendor/nothing.js").status_code == 404


# -- /metrics on a real server ----------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[MesServer, InMemoryBroker]]:
    broker = InMemoryBroker()

    def factory(endpoint: MqttEndpoint, **kwargs: Any) -> InMemoryBrokerClient:
        return broker.client(endpoint.client_id, **kwargs)

    settings = ServerSettings(host_id="metrics", database_url=f"sqlite:///{tmp_path / 'a.db'}")
    mes = MesServer(settings, client_factory=factory, serve_http=False)
    mes.start()
    try:
        assert mes.host.wait_online(5.0)
        yield mes, broker
    finally:
        mes.stop()


def _sample_value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics:\n{text}")


def test_metrics_is_prometheus_text_with_andon_metrics(
    server: tuple[MesServer, InMemoryBroker],
) -> None:
    mes, broker = server
    edge = EdgeNodeSession("Plant", "Edge1", bd_seq=None)
    edge.next_will(T0)
    edge.on_connected(T0)
    publisher = broker.client("edge", on_message=lambda t, p: None, listener=_NoListener())
    publisher.start()
    births = edge.births([], {"Filler1": [Metric("Speed", 1.0, DataType.DOUBLE)]}, T0)
    for publish in births:
        publisher.publish(publish.topic, publish.payload, qos=1)
    publisher.publish("spBv1.0/Plant/NDATA/Edge1", b"\xff garbage", qos=1)
    publisher.publish("spBv1.0/Plant", encode_payload_empty(), qos=1)
    assert mes.ingest.drain(10.0)
    assert mes.historian.flush(10.0)

    http = authenticated_client(mes.api, Role.OPERATOR)
    # /metrics is open by default: a Prometheus scraper carries no token.
    assert TestClient(mes.api).get("/metrics").status_code == 200
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE andon_ingest_messages" in text
    assert "# TYPE andon_historian_queue_depth gauge" in text
    assert _sample_value(text, "andon_ingest_messages_total") >= 4  # 2 births, 2 bad (+ STATE)
    # Node Control/Rebirth (NBIRTH) and Speed (DBIRTH); bdSeq is not a value.
    assert _sample_value(text, "andon_ingest_values_total") == 2
    assert _sample_value(text, 'andon_sparkplug_problems_total{kind="malformed_payload"}') == 1
    assert _sample_value(text, 'andon_sparkplug_problems_total{kind="bad_topic"}') == 1
    assert _sample_value(text, 'andon_sparkplug_problems_total{kind="rebirth_requested"}') == 1
    assert _sample_value(text, "andon_historian_committed_total") == 1
    assert _sample_value(text, "andon_mqtt_connected") == 1
    assert _sample_value(text, "andon_database_up") == 1
    assert _sample_value(text, "andon_live_tags") == 1
    assert _sample_value(text, "andon_edge_nodes_online") == 0  # offline since the rebirth request
    assert _sample_value(text, "andon_ingest_queue_depth") == 0
    # The committed value went through the historian's insert process (the default).
    assert [inserts.child_pid is not None for inserts in mes.insert_processes] == [True]
    assert _sample_value(text, "andon_historian_insert_process_restarts_total") == 0
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert line.startswith("andon_"), line
    # The same server's health, for contrast: everything is up.
    assert http.get("/api/v1/health").status_code == 200
    publisher.stop()


def encode_payload_empty() -> bytes:
    from andon.sparkplug.model import Payload

    return encode_payload(Payload(timestamp=T0, metrics=(), seq=0))


class _NoListener:
    def on_connected(self) -> None:
        pass

    def on_disconnected(self, reason: str) -> None:
        pass
