"""``andon bench replay``: how fast a store-and-forward backlog drains into the historian.

One hour of a 500-tag plant at 1 Hz (1.8 million values) is written into an edge's spool, as if
the edge had been cut off for an hour. Then a real broker, ``andon server`` and ``andon edge``
(separate processes) run, and the clock runs from the edge's start until the historian holds
every value. Target (DESIGN.md §9): >= 10 x real time and >= 100,000 values/s.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from andon.bench.brokers import bench_broker
from andon.bench.report import Figure
from andon.bench.server_progress import wait_until_stored
from andon.edge.sources.base import TagChange, TagSpec
from andon.edge.sources.simulator import PlantSimulator, benchmark_plant
from andon.edge.spool import StoreAndForwardSpool
from andon.sparkplug.model import DataType, MetricValue
from andon.storage.store import open_historian_store
from andon.testing.clock import SystemClock
from andon.testing.processes import AndonRig

__all__ = ["prefill_spool", "run_replay"]

Progress = Callable[[str, float, float], None]  # (task, done, total)

_INTEGER_TYPES = {
    DataType.INT8,
    DataType.INT16,
    DataType.INT32,
    DataType.INT64,
    DataType.UINT8,
    DataType.UINT16,
    DataType.UINT32,
    DataType.UINT64,
}


def _value(spec: TagSpec, second: int) -> MetricValue:
    if spec.datatype in _INTEGER_TYPES:
        return second % 100
    if spec.datatype in (DataType.FLOAT, DataType.DOUBLE):
        return second + 0.25
    if spec.datatype is DataType.BOOLEAN:
        return second % 2 == 0
    return f"v{second}"


def prefill_spool(
    path: Path,
    machines: int,
    tags_per_machine: int,
    seconds: int,
    end_ms: int,
    progress: Progress | None = None,
) -> int:
    """Write ``seconds`` of 1 Hz values of every tag, ending before ``end_ms``; returns count."""
    specs = PlantSimulator(benchmark_plant(machines, tags_per_machine), start_ms=end_ms).describe()
    start_ms = end_ms - seconds * 1000
    written = 0
    with StoreAndForwardSpool(path, clock=SystemClock(), max_bytes=4 * 2**30) as spool:
        chunk = 60
        for first in range(0, seconds, chunk):
            batches: list[tuple[str | None, list[TagChange]]] = []
            for second in range(first, min(first + chunk, seconds)):
                ts = start_ms + second * 1000
                for device, device_specs in specs.items():
                    batches.append(
                        (
                            device,
                            [
                                TagChange(device, s.name, _value(s, second), ts)
                                for s in device_specs
                            ],
                        )
                    )
            spool.append_many(batches)
            written += sum(len(changes) for _, changes in batches)
            if progress is not None:
                progress("prefill spool", min(first + chunk, seconds), seconds)
    return written


def run_replay(
    *,
    database_url: str | None = None,
    broker: str = "nats",
    minutes: int = 60,
    machines: int = 20,
    tags_per_machine: int = 25,
    workdir: Path | None = None,
    timeout_s: float = 900.0,
    progress: Progress | None = None,
) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="andon-bench-replay-") as tmp:
        work = workdir or Path(tmp)
        url = database_url or f"sqlite:///{work / 'bench.db'}"
        broker_process = bench_broker(broker, work / "broker")
        rig = AndonRig(
            work / "rig",
            mqtt_port=broker_process.port,
            database_url=url,
            # The simulator only supplies the birth; the backlog is what is measured.
            poll_interval_s=3600.0,
            simulator={"machines": machines, "tags_per_machine": tags_per_machine},
            edge_extra={"spool": {"flush_batch_records": 500}},
        )
        try:
            seconds = minutes * 60
            backlog = prefill_spool(
                rig.spool_path,
                machines,
                tags_per_machine,
                seconds,
                end_ms=time.time_ns() // 1_000_000 - 1000,
                progress=progress,
            )
            rig.start_server()
            store = open_historian_store(url)
            try:
                before = store.count()
                started = time.monotonic()
                rig.start_edge()
                expected = before + backlog + machines * tags_per_machine
                try:
                    finished = wait_until_stored(
                        url,
                        rig.http_port,
                        expected,
                        server=rig.server,
                        already_stored=before,
                        timeout_s=timeout_s,
                        progress=progress,
                        also_running=[rig.edge],
                    )
                except RuntimeError as exc:
                    raise RuntimeError(f"replay incomplete: {exc}") from None
                elapsed = finished - started
            finally:
                store.close()
        finally:
            rig.stop_edge()
            rig.stop_server()
            broker_process.stop()
    rate = backlog / elapsed
    speedup = seconds / elapsed
    conditions: dict[str, object] = {
        "backlog_values": backlog,
        "tags": machines * tags_per_machine,
        "backlog_minutes": minutes,
        "broker": broker,
        "database": url.split(":", 1)[0],
        "elapsed_s": round(elapsed, 2),
    }
    return [
        Figure("replay", "backlog drain rate", rate, "values/s", ">= 100,000", rate >= 100_000,
               conditions=conditions),
        Figure("replay", "backlog drain speed", speedup, "x real time", ">= 10", speedup >= 10,
               conditions=conditions),
    ]  # fmt: skip
