"""In-process micro-benchmark: SQLite inserts of historian rows, alone and beside a busy thread.

The server writes history from one thread while others (MQTT, ingest, web) run Python code.
The sqlite3 module releases the GIL around every step of a statement, so ``executemany`` (one
step per row) hands the GIL over once per row, and each hand-over to a busy thread can cost up
to the interpreter's switch interval. The store therefore inserts many rows per statement.
This measures both ways of writing the same rows into the ``sample`` table of a fresh database,
with and without a competing pure-Python thread.

Run it with ``python -m andon.bench.microbench_sqlite [rows]``.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from andon.storage.codec import SampleRow
from andon.storage.migrate import upgrade_database
from andon.storage.store import open_historian_store
from andon.storage.types import Sample

__all__ = ["sqlite_insert_rates"]

_BATCH = 20_000
_TAGS = 500
_BASE = 1_700_000_000_000
_EXECUTEMANY = (
    "INSERT INTO sample (tag_id, ts, value_double, value_int, value_text, value_bytes,"
    " quality, is_historical) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tag_id, ts) DO NOTHING"
)


def _busy(stop: threading.Event) -> None:
    total = 0
    while not stop.is_set():
        for i in range(1000):
            total += i


def _timed(write: Callable[[int], None], batches: int, contended: bool) -> float:
    stop = threading.Event()
    busy = threading.Thread(target=_busy, args=(stop,), daemon=True)
    if contended:
        busy.start()
    started = time.perf_counter()
    try:
        for index in range(batches):
            write(index)
    finally:
        stop.set()
        if contended:
            busy.join()
    return time.perf_counter() - started


def _executemany_rate(path: Path, batches: int, contended: bool) -> float:
    upgrade_database(f"sqlite:///{path}")
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    rows: list[list[SampleRow]] = [
        [
            (i % _TAGS, _BASE + i // _TAGS, float(i), None, None, None, 192, False)
            for i in range(index * _BATCH, (index + 1) * _BATCH)
        ]
        for index in range(batches)
    ]

    def write(index: int) -> None:
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(_EXECUTEMANY, rows[index])
        connection.execute("COMMIT")

    try:
        rate = batches * _BATCH / _timed(write, batches, contended)
        _check_count(connection.execute("SELECT count(*) FROM sample").fetchone()[0], batches)
        return rate
    finally:
        connection.close()


def _store_rate(path: Path, batches: int, contended: bool) -> float:
    url = f"sqlite:///{path}"
    upgrade_database(url)
    store = open_historian_store(url)
    samples = [
        [
            Sample(f"B/E/D/v{i % _TAGS}", _BASE + i // _TAGS, float(i), 192, False, 10)
            for i in range(index * _BATCH, (index + 1) * _BATCH)
        ]
        for index in range(batches)
    ]
    store.write_batch([Sample(f"B/E/D/v{t}", _BASE - 1, 0.0, 192, False, 10) for t in range(_TAGS)])

    def write(index: int) -> None:
        store.write_batch(samples[index])

    try:
        rate = batches * _BATCH / _timed(write, batches, contended)
        _check_count(store.count() - _TAGS, batches)
        return rate
    finally:
        store.close()


def _check_count(stored: int, batches: int) -> None:
    if stored != batches * _BATCH:
        raise RuntimeError(f"{stored:,} rows stored of {batches * _BATCH:,} written")


def sqlite_insert_rates(rows: int = 200_000) -> dict[str, float]:
    """Rows/s of ``executemany`` and of the historian store, each alone and contended."""
    batches = max(1, rows // _BATCH)
    result: dict[str, float] = {"rows": float(batches * _BATCH)}
    with tempfile.TemporaryDirectory(prefix="andon-microbench-sqlite-") as tmp:
        for contended in (False, True):
            suffix = "contended" if contended else "alone"
            result[f"executemany_{suffix}"] = _executemany_rate(
                Path(tmp) / f"many-{suffix}.db", batches, contended
            )
            result[f"store_{suffix}"] = _store_rate(
                Path(tmp) / f"store-{suffix}.db", batches, contended
            )
    return result


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    rows = int(args[0]) if args else 200_000
    for key, rate in sqlite_insert_rates(rows).items():
        unit = "" if key == "rows" else " rows/s"
        print(f"{key:>22}: {rate:>12,.0f}{unit}")


if __name__ == "__main__":
    main()
