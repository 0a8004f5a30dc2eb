"""``andon bench latency``: a value changed at the edge until a live-feed client sees it.

The server's capacity is measured first in the same run (the ``ingest`` benchmark's end-to-end
rate for a few seconds) unless given; then a paced plant loads the server at ``load_fraction``
of it (20 % by default, DESIGN.md §9) while a probe edge node publishes, ``probe_hz`` times a
second, a tag whose value is the wall-clock time it was published at. A client of the live feed
(``GET /api/v1/live``, server-sent events, as the web UI uses it) reads the probe's changes; the
latency of each is the client's clock at arrival minus the value (same machine, same clock).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from andon.bench.bench_server import BenchServer, bench_server
from andon.bench.brokers import bench_broker
from andon.bench.edge_client import connect_edge_client
from andon.bench.ingest import measure_capacity
from andon.bench.report import Figure
from andon.sparkplug.edge_node import EdgeNodeSession
from andon.sparkplug.model import DataType, Metric

__all__ = ["PROBE_TAG", "percentile", "run_latency"]

Progress = Callable[[str, float, float], None]

PROBE_GROUP, PROBE_NODE, PROBE_DEVICE, PROBE_METRIC = "Latency", "Probe", "P", "SentMs"
PROBE_TAG = f"{PROBE_GROUP}/{PROBE_NODE}/{PROBE_DEVICE}/{PROBE_METRIC}"


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _now_ms() -> float:
    return time.time_ns() / 1_000_000


class _LiveFeedReader(threading.Thread):
    """Reads the probe's changes from the live feed; records (sent, latency) per change."""

    def __init__(self, server: BenchServer) -> None:
        super().__init__(name="latency-sse", daemon=True)
        self._request = urllib.request.Request(
            f"{server.base_url}/api/v1/live?events=tags&tag_prefix={PROBE_TAG}",
            headers={"Authorization": f"Bearer {server.token()}"},
        )
        self.samples: list[tuple[float, float]] = []
        self.subscribed = threading.Event()
        self.error: str | None = None
        self._stop = threading.Event()

    def run(self) -> None:
        try:
            with urllib.request.urlopen(self._request, timeout=30) as response:
                event = ""
                for raw in response:
                    if self._stop.is_set():
                        return
                    line = raw.decode().rstrip("\n")
                    if line.startswith("retry:"):
                        self.subscribed.set()
                    elif line.startswith("event: "):
                        event = line.removeprefix("event: ")
                    elif line.startswith("data: ") and event == "tags":
                        arrived = _now_ms()
                        for item in json.loads(line.removeprefix("data: ")):
                            if item.get("path") == PROBE_TAG and item.get("value") is not None:
                                sent = float(item["value"])
                                self.samples.append((sent, arrived - sent))
        except OSError as exc:  # the stream ends when the server stops: only early ends count
            if not self._stop.is_set():
                self.error = str(exc)

    def stop(self) -> None:
        self._stop.set()


def _publish_probe(port: int, seconds: float, hz: float, stop: threading.Event) -> tuple[int, int]:
    """Publish the probe for ``seconds``; returns how many changes were sent and the last one."""
    session = EdgeNodeSession(PROBE_GROUP, PROBE_NODE, bd_seq=None)
    client = connect_edge_client(session, port, "andon-latency-probe")
    try:
        now = int(_now_ms())
        for publish in session.births(
            [], {PROBE_DEVICE: [Metric(PROBE_METRIC, now, DataType.INT64, timestamp=now)]}, now
        ):
            client.publish(publish.topic, publish.payload, 1, False).wait(15)
        sent = 0
        started = time.monotonic()
        while not stop.is_set() and time.monotonic() - started < seconds:
            now = max(now + 1, int(_now_ms()))  # each change its own value and timestamp
            metric = Metric(PROBE_METRIC, now, DataType.INT64, timestamp=now)
            data = session.data(PROBE_DEVICE, [metric], now)
            client.publish(data.topic, data.payload, 1, False)
            sent += 1
            stop.wait(1.0 / hz)  # the probe's own pace
        return sent, now
    finally:
        client.stop()


def run_latency(
    *,
    database_url: str | None = None,
    broker: str = "nats",
    capacity: float | None = None,
    load_fraction: float = 0.2,
    seconds: float = 30.0,
    warmup: float = 5.0,
    probe_hz: float = 20.0,
    workdir: Path | None = None,
    progress: Progress | None = None,
) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="andon-bench-latency-") as tmp:
        work = workdir or Path(tmp)
        broker_process = bench_broker(broker, work / "broker")
        try:
            if capacity is None:
                if progress is not None:
                    progress("measuring the server's capacity", 0, 1)
                capacity = measure_capacity(database_url, broker_process.port, 10.0, work)
            load = capacity * load_fraction
            url = database_url or f"sqlite:///{work / 'latency.db'}"
            with bench_server(work / "server", url, broker_process.port) as server:
                samples, sent = _measure(server, broker_process.port, load, seconds, warmup,
                                         probe_hz, progress)  # fmt: skip
        finally:
            broker_process.stop()
    latencies = [latency for _sent, latency in samples]
    conditions: dict[str, object] = {
        "capacity_values_s": round(capacity), "load_values_s": round(load),
        "probes_sent": sent, "probes_measured": len(latencies), "probe_hz": probe_hz,
        "measured_s": seconds, "broker": broker,
        "database": (database_url or "sqlite").split(":", 1)[0],
    }  # fmt: skip
    p99 = percentile(latencies, 0.99)
    return [
        Figure("latency", "edge to live feed, p50", percentile(latencies, 0.5), "ms",
               conditions=conditions),
        Figure("latency", "edge to live feed, p99", p99, "ms", "<= 250 ms", p99 <= 250),
        Figure("latency", "edge to live feed, max", max(latencies), "ms"),
    ]  # fmt: skip


def _measure(
    server: BenchServer, port: int, load: float, seconds: float, warmup: float, probe_hz: float,
    progress: Progress | None,
) -> tuple[list[tuple[float, float]], int]:  # fmt: skip
    machines = max(1, round(load / 25))
    generator = subprocess.Popen(
        [sys.executable, "-m", "andon.bench.paced_load", "--port", str(port), "--group",
         "LatencyLoad", "--machines", str(machines), "--seconds", str(warmup + seconds + 5)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    reader = _LiveFeedReader(server)
    stop = threading.Event()
    try:
        reader.start()
        if not reader.subscribed.wait(30):
            raise RuntimeError(f"the live feed did not answer: {reader.error}")
        window_start = _now_ms() + warmup * 1000
        probe_result: list[tuple[int, int]] = []
        probe = threading.Thread(
            target=lambda: probe_result.append(
                _publish_probe(port, warmup + seconds, probe_hz, stop)
            ),
            daemon=True,
        )
        probe.start()
        started = time.monotonic()
        while probe.is_alive():
            server.check_running()
            if progress is not None:
                progress("measuring latency", time.monotonic() - started, warmup + seconds)
            probe.join(0.5)
        if not probe_result:
            raise RuntimeError("the probe publisher failed")
        sent, last_ms = probe_result[0]
        # The last probes may still be in flight: let them arrive before the feed closes.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (
            not reader.samples or reader.samples[-1][0] < last_ms
        ):
            time.sleep(0.05)  # sampling the reader's list while the last values arrive
        if reader.error is not None:
            raise RuntimeError(f"the live feed failed: {reader.error}")
        samples = [s for s in reader.samples if s[0] >= window_start]
        if not samples:
            raise RuntimeError("no probe value reached the live feed")
        return samples, sent
    finally:
        stop.set()
        reader.stop()
        if generator.poll() is None:
            generator.kill()
        generator.communicate()
