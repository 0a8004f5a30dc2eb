"""In-process micro-benchmark: the historian writer on a wide plant (many tags, each at 1 Hz).

Samples are stored clustered by (tag, time), so every tag has its own place in the table where
new values go. A commit writes each page it touched once; with one value per tag per commit that
is a page (4 KiB) per value, and the writer slows down as the table outgrows the page cache. The
figure is how the writer's batch size (``historian_max_batch``) changes that: values/s and CPU
per value for the same data written through the real ``HistorianWriter`` into SQLite (or the
database given), as ``andon bench scale`` loads the server.

Run it with ``python -m andon.bench.microbench_wide [tags] [seconds] [batch ...] [--database URL]``
(defaults: 25,000 tags, 150 seconds of data, batches of 20,000 and 100,000).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from andon.storage.historian_writer import HistorianWriter
from andon.storage.migrate import upgrade_database
from andon.storage.store import open_historian_store
from andon.storage.types import Sample

__all__ = ["wide_plant_rate"]

_BASE = 1_700_000_000_000
_TAGS_PER_MESSAGE = 25
#: Seconds of data written before the clock starts (creates the tags).
_WARMUP_SECONDS = 5


def wide_plant_rate(
    tags: int, seconds: int, batch: int, database: str | None = None
) -> dict[str, float]:
    """Write ``seconds`` of one value per tag per second, submitted 25 samples at a time as the
    ingest does, through a writer of batch ``batch``; returns values/s, CPU us per value (the
    whole process: the submitting thread and the writer) and the values written."""
    with tempfile.TemporaryDirectory(prefix="andon-wide-") as tmp:
        url = database or f"sqlite:///{Path(tmp) / 'wide.db'}"
        upgrade_database(url)
        store = open_historian_store(url)
        before = store.count()
        writer = HistorianWriter(store, max_batch=batch, queue_capacity=2 * batch)
        writer.start()
        names = [f"Wide/E{t // 12_500}/M{t // 25}/T{t % 25}" for t in range(tags)]

        def second(n: int) -> None:
            ts = _BASE + n * 1000
            for first in range(0, tags, _TAGS_PER_MESSAGE):
                last = min(first + _TAGS_PER_MESSAGE, tags)
                writer.submit([Sample(names[i], ts, float(n + i)) for i in range(first, last)])

        try:
            for n in range(_WARMUP_SECONDS):
                second(n)
            writer.flush(None)
            wall, cpu = time.perf_counter(), time.process_time()
            for n in range(_WARMUP_SECONDS, _WARMUP_SECONDS + seconds):
                second(n)
            writer.flush(None)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            stored = store.count() - before
        finally:
            writer.stop(60.0)
            store.close()
        values = tags * seconds
        if stored != tags * (seconds + _WARMUP_SECONDS):  # zero loss, or the figure means nothing
            raise RuntimeError(
                f"{tags * (seconds + _WARMUP_SECONDS)} values written, {stored} stored"
            )
    return {"values_s": values / wall, "cpu_us_per_value": cpu / values * 1e6, "values": values}


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    database = None
    if "--database" in args:
        at = args.index("--database")
        database = args[at + 1]
        del args[at : at + 2]
    tags = int(args[0]) if args else 25_000
    seconds = int(args[1]) if len(args) > 1 else 150
    batches = [int(a) for a in args[2:]] or [20_000, 100_000]
    for batch in batches:
        result = wide_plant_rate(tags, seconds, batch, database)
        print(
            f"{tags:,} tags x {seconds} s, batch {batch:>7,}: {result['values_s']:>9,.0f} values/s,"
            f" {result['cpu_us_per_value']:5.1f} us CPU per value"
        )


if __name__ == "__main__":
    main()
