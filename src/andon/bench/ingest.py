"""``andon bench ingest``: Sparkplug DDATA through a real broker into the historian, end to end.

A load generator process publishes DDATA (25 values per message, QoS 1) for a fixed time as fast
as the broker acknowledges; ``andon server`` (its own process) ingests it. The figure is the
number of values divided by the time from the first publish until the historian holds every one
of them (counted: zero loss is checked, not assumed). In the same run, the same number of rows is
written straight into a fresh database through the historian store (``write_batch``: COPY on
PostgreSQL, executemany on SQLite): the database's own limit, and the ratio between the two.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from andon.bench.brokers import bench_broker
from andon.bench.report import Figure
from andon.bench.server_progress import wait_until_stored
from andon.settings import ServerSettings
from andon.storage.admin import create_postgres_database, drop_postgres_database
from andon.storage.migrate import upgrade_database
from andon.storage.store import open_historian_store
from andon.storage.types import Sample
from andon.testing.ports import free_port
from andon.testing.processes import AndonProcess, http_get, wait_until, write_toml

__all__ = ["database_limit", "measure_capacity", "run_ingest"]

Progress = Callable[[str, float, float], None]


@contextmanager
def _fresh_database(url: str | None, work: Path, name: str) -> Iterator[str]:
    """A new, empty database: a SQLite file, or a new database on the PostgreSQL server."""
    if url is None or url.startswith("sqlite"):
        yield f"sqlite:///{work / (name + '.db')}"
        return
    db_name = f"andon_bench_{name}_{uuid.uuid4().hex[:8]}"
    created = create_postgres_database(url, db_name)
    try:
        yield created
    finally:
        drop_postgres_database(url, db_name)


def database_limit(url: str, values: int, tags: int, batch: int | None = None) -> float:
    """Rows/s when ``values`` rows of ``tags`` tags go straight into the store, in batches.

    Batches as large as the server's writer takes by default (``historian_max_batch``): the
    limit is what the database does with the same transactions, nothing held back.
    """
    batch = batch or ServerSettings.model_fields["historian_max_batch"].default
    upgrade_database(url)
    store = open_historian_store(url)
    try:
        base = time.time_ns() // 1_000_000
        rows = [
            Sample(f"Bench/Limit/D{t // 25:04d}/Value{t % 25:03d}", base + i // tags, float(i), 192,
                   False, 10)
            for i, t in ((i, i % tags) for i in range(values))
        ]  # fmt: skip
        started = time.monotonic()
        for start in range(0, len(rows), batch):
            store.write_batch(rows[start : start + batch])
        return values / (time.monotonic() - started)
    finally:
        store.close()


def measure_capacity(database_url: str | None, mqtt_port: int, seconds: float, work: Path) -> float:
    """The end-to-end ingest rate (values/s) of a fresh server for ``seconds`` of full load."""
    with _fresh_database(database_url, work, "capacity") as url:
        result, elapsed = _ingest_run(url, mqtt_port, seconds, work / "capacity", None)
    return int(result["published_values"]) / elapsed


def run_ingest(
    *,
    database_url: str | None = None,
    broker: str = "nats",
    seconds: float = 60.0,
    workdir: Path | None = None,
    progress: Progress | None = None,
) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="andon-bench-ingest-") as tmp:
        work = workdir or Path(tmp)
        broker_process = bench_broker(broker, work / "broker")
        try:
            with _fresh_database(database_url, work, "ingest") as url:
                result, elapsed = _ingest_run(url, broker_process.port, seconds, work, progress)
            with _fresh_database(database_url, work, "limit") as limit_url:
                limit = database_limit(limit_url, int(result["published_values"]),
                                       int(result["tags"]))  # fmt: skip
        finally:
            broker_process.stop()
    values = int(result["published_values"])
    rate = values / elapsed
    conditions: dict[str, object] = {
        "values": values,
        "tags": int(result["tags"]),
        "values_per_message": 25,
        "publish_s": round(result["seconds"], 1),
        "until_stored_s": round(elapsed, 1),
        # Time the load generator waited for the server's commits (max_ahead): a load that
        # never waits was not limited by the server.
        "publisher_paused_s": result["paused_s"],
        "broker": broker,
        "database": (database_url or "sqlite").split(":", 1)[0],
        "lost": 0,
    }
    target = 200_000 if str(conditions["database"]).startswith("postgres") else 150_000
    return [
        Figure("ingest", "end-to-end ingest", rate, "values/s", f">= {target:,}", rate >= target,
               limit=limit, conditions=conditions),
        Figure("ingest", "ingest / database limit", rate / limit, "ratio", ">= 0.5",
               rate / limit >= 0.5, conditions={"database_limit_rows_s": round(limit)}),
    ]  # fmt: skip


def _ingest_run(
    url: str, mqtt_port: int, seconds: float, work: Path, progress: Progress | None
) -> tuple[dict[str, float], float]:
    http_port = free_port()
    config = write_toml(
        work / "server.toml",
        {
            "host_id": "andon-bench",
            "database_url": url,
            "http_port": http_port,
            "mqtt": {"port": mqtt_port},
        },
    )
    server = AndonProcess(["server", "--config", str(config)], work / "server.log", cwd=work)
    server.start()
    try:
        wait_until(
            lambda: http_get(f"http://127.0.0.1:{http_port}/api/v1/health")[0] == 200,
            60.0,
            "andon server healthy",
            processes=[server],
        )
        started = time.monotonic()
        loadgen = subprocess.run(
            [sys.executable, "-m", "andon.bench.loadgen", "--port", str(mqtt_port),
             "--seconds", str(seconds), "--server-http-port", str(http_port)],
            capture_output=True, text=True, check=False, timeout=seconds + 120,
        )  # fmt: skip
        if loadgen.returncode != 0:
            raise RuntimeError(f"load generator failed: {loadgen.stderr.strip()[-2000:]}")
        result: dict[str, float] = json.loads(loadgen.stdout.strip().splitlines()[-1])
        # Every published value, plus the births' values (one per tag, stamped before the data).
        expected = int(result["published_values"]) + int(result["tags"])
        finished = wait_until_stored(url, http_port, expected, server=server, progress=progress)
        elapsed = finished - started
        return result, elapsed
    finally:
        server.stop()
