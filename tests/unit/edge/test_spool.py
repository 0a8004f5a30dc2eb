"""The edge store-and-forward spool: order, acks, limits, persisted counters, kill -9 safety."""

from __future__ import annotations

import logging
import math
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from andon.edge.sources.base import TagChange
from andon.edge.spool import (
    RECORD_OVERHEAD_BYTES,
    SpoolError,
    SpoolFullError,
    StoreAndForwardSpool,
    decode_changes,
    encode_changes,
)
from andon.testing.clock import ManualClock

TS = 1_700_000_000_000


def batch(device: str | None, seq: int, width: int = 5) -> list[TagChange]:
    owner = device or ""
    return [TagChange(owner, f"Tag{i}", seq * 100 + i, TS + seq * 1000 + i) for i in range(width)]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(TS)


def open_spool(path: Path, clock: ManualClock, **limits: float) -> StoreAndForwardSpool:
    return StoreAndForwardSpool(path, clock=clock, **limits)  # type: ignore[arg-type]


def test_records_come_back_in_order_with_exact_values(tmp_path: Path, clock: ManualClock) -> None:
    odd = [
        TagChange("Filler1", "b", True, TS),
        TagChange("Filler1", "i", -(2**63), TS + 1),
        TagChange("Filler1", "u", 2**64 - 1, TS + 2),
        TagChange("Filler1", "f", 0.1, TS - 5),
        TagChange("Filler1", "inf", math.inf, TS),
        TagChange("Filler1", "s", 'Grüße "quoted" \n', TS),
        TagChange("Filler1", "null", None, TS),
        TagChange("Filler1", "raw", b"\x00\xff", TS),
        TagChange("Filler1", "arr", (1, 2, 3), TS),
        TagChange("Filler1", "one", 1.0, TS),
    ]
    with open_spool(tmp_path / "s.db", clock) as spool:
        first = spool.append("Filler1", odd)
        rest = spool.append_many([(None, batch(None, 1)), ("Capper1", batch("Capper1", 2))])
        records = spool.peek(10)
    assert [r.id for r in records] == [first, *rest]
    assert first < rest[0] < rest[1]
    assert records[0].changes == tuple(odd)
    assert type(records[0].changes[-1].value) is float  # 1.0 stays a float, True stays a bool
    assert records[0].first_ts_ms == TS - 5
    assert records[0].value_count == len(odd)
    assert records[1].device_id is None
    assert records[1].changes == tuple(batch(None, 1))
    assert records[2].changes == tuple(batch("Capper1", 2))
    assert decode_changes("X", encode_changes("X", batch("X", 3))) == tuple(batch("X", 3))


def test_peek_pages_with_after_id_and_ack_removes_exactly_those(
    tmp_path: Path, clock: ManualClock
) -> None:
    spool = open_spool(tmp_path / "s.db", clock)
    ids = spool.append_many([("D", batch("D", seq)) for seq in range(10)])
    assert [r.id for r in spool.peek(3)] == ids[:3]
    assert [r.id for r in spool.peek(3, after_id=ids[2])] == ids[3:6]
    assert spool.ack([ids[1], ids[4], 999_999]) == 2
    assert [r.id for r in spool.peek(100)] == [i for i in ids if i not in (ids[1], ids[4])]
    assert spool.ack_through(ids[6]) == 5
    assert [r.id for r in spool.peek(100)] == ids[7:]
    stats = spool.stats()
    assert (stats.records, stats.values) == (3, 15)
    assert stats.oldest_ts_ms == batch("D", 7)[0].ts_ms
    assert stats.bytes == sum(len(encode_changes("D", batch("D", s))) for s in (7, 8, 9)) + (
        3 * RECORD_OVERHEAD_BYTES
    )
    spool.ack(ids)
    assert spool.stats().records == 0
    assert spool.stats().oldest_ts_ms is None
    spool.close()
    with open_spool(tmp_path / "s.db", clock) as reopened:  # ids are never reused
        assert reopened.append("D", batch("D", 0)) > ids[-1]


def test_size_limit_drops_the_oldest_and_the_counts_survive_a_reopen(
    tmp_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    record_bytes = len(encode_changes("D", batch("D", 10))) + RECORD_OVERHEAD_BYTES
    limit = record_bytes * 5 + record_bytes // 2  # room for five records
    spool = open_spool(tmp_path / "s.db", clock, max_bytes=limit)
    with caplog.at_level(logging.WARNING, logger="andon.edge.spool"):
        ids = [spool.append("D", batch("D", seq)) for seq in range(10, 18)]
    assert [r.id for r in spool.peek(100)] == ids[3:]
    stats = spool.stats()
    assert (stats.records, stats.dropped_records_total, stats.dropped_values_total) == (5, 3, 15)
    assert stats.bytes <= limit
    warnings = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(warnings) == 1  # the first drop warns; the next ones wait for the interval
    spool.close()
    with open_spool(tmp_path / "s.db", clock, max_bytes=record_bytes * 2) as reopened:
        stats = reopened.stats()  # a lower limit applies on open
        assert (stats.records, stats.dropped_records_total, stats.dropped_values_total) == (
            2,
            6,
            30,
        )
        assert [r.id for r in reopened.peek(100)] == ids[6:]


def test_records_older_than_max_age_are_dropped_oldest_first(
    tmp_path: Path, clock: ManualClock
) -> None:
    spool = open_spool(tmp_path / "s.db", clock, max_age_s=60)
    old = spool.append("D", batch("D", 1))
    clock.advance(30)
    middle = spool.append("D", batch("D", 2))
    clock.advance(31)  # `old` is now 61 s old
    spool.enforce_limits()
    assert [r.id for r in spool.peek(10)] == [middle]
    clock.advance(30)
    young = spool.append("D", batch("D", 3))  # appending also ages the spool out
    assert [r.id for r in spool.peek(10)] == [young]
    assert old < middle < young
    assert spool.stats().dropped_records_total == 2


def test_bad_records_are_refused_without_writing(tmp_path: Path, clock: ManualClock) -> None:
    spool = open_spool(tmp_path / "s.db", clock, max_bytes=400)
    with pytest.raises(ValueError, match="at least one change"):
        spool.append("D", [])
    with pytest.raises(ValueError, match="in a record of"):
        spool.append("D", batch("E", 1))
    with pytest.raises(SpoolError, match="exceeds the spool's max_bytes"):
        spool.append("D", batch("D", 1, width=50))
    with pytest.raises(TypeError, match="cannot spool"):
        spool.append("D", [TagChange("D", "x", [1], TS)])  # type: ignore[arg-type]
    assert spool.stats().records == 0
    spool.close()
    with pytest.raises(SpoolError, match="closed"):
        spool.peek(1)


def test_a_full_disk_is_a_clear_error_and_the_spool_keeps_working(
    tmp_path: Path, clock: ManualClock
) -> None:
    spool = open_spool(tmp_path / "s.db", clock)
    kept = spool.append("D", batch("D", 1))
    conn = spool._conn  # test hook: a page cap makes SQLite report SQLITE_FULL like a full disk
    assert conn is not None
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    big = [TagChange("D", f"Tag{i}", "x" * 500, TS) for i in range(40)]
    with pytest.raises(SpoolFullError, match="disk full"):
        spool.append_many([("D", big) for _ in range(20)])
    assert [r.id for r in spool.peek(10)] == [kept]
    assert spool.stats().records == 1
    conn.execute("PRAGMA max_page_count = 1073741823")
    assert spool.append("D", big) > kept


def test_edge_state_integers_persist(tmp_path: Path, clock: ManualClock) -> None:
    with open_spool(tmp_path / "s.db", clock) as spool:
        assert spool.get_int("bdSeq") is None
        spool.set_int("bdSeq", 3)
        spool.set_int("bdSeq", 4)
        spool.set_int("fence_epoch", 2**62)
    with open_spool(tmp_path / "s.db", clock) as spool:
        assert (spool.get_int("bdSeq"), spool.get_int("fence_epoch")) == (4, 2**62)


CHILD = """
import sys
from pathlib import Path
from andon.edge.sources.base import TagChange
from andon.edge.spool import StoreAndForwardSpool
from andon.testing.clock import SystemClock

path, device = Path(sys.argv[1]), sys.argv[2]
spool = StoreAndForwardSpool(path, clock=SystemClock())
seq = 0
while True:
    changes = [TagChange(device, f"T{i}", seq * 100 + i, 1000 + seq) for i in range(25)]
    if seq % 2:
        record_id = spool.append(device, changes)
    else:
        record_id = spool.append_many([(device, changes)])[0]
    print(record_id, seq, flush=True)  # printed only once the append has returned (durable)
    seq += 1
"""


def _run_until_killed(path: Path, device: str, confirmations: int) -> list[tuple[int, int]]:
    """Start an appending child, SIGKILL it after ``confirmations`` lines; all confirmed lines."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), device],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    confirmed: list[tuple[int, int]] = []
    try:
        while len(confirmed) < confirmations:
            line = lines.get(timeout=60)
            assert line is not None, "the child exited on its own"
            record_id, seq = line.split()
            confirmed.append((int(record_id), int(seq)))
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    while (line := lines.get(timeout=30)) is not None:  # lines written just before the kill
        record_id, seq = line.split()
        confirmed.append((int(record_id), int(seq)))
    return confirmed


def test_kill_9_while_appending_keeps_every_confirmed_record_and_no_corruption(
    tmp_path: Path, clock: ManualClock
) -> None:
    path = tmp_path / "spool.db"
    rng = random.Random(5)
    confirmed_by_device: dict[str, list[tuple[int, int]]] = {}
    for round_no in range(3):
        device = f"Dev{round_no}"
        confirmed_by_device[device] = _run_until_killed(path, device, rng.randint(5, 150))
        with sqlite3.connect(path) as raw:
            assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        with open_spool(path, clock) as spool:
            records = spool.peek(100_000)
        for dev, confirmed in confirmed_by_device.items():
            held = [r for r in records if r.device_id == dev]
            # a prefix of what was appended: seq 0..n without gaps, at least every confirmed one
            assert [r.changes[0].ts_ms - 1000 for r in held] == list(range(len(held)))
            assert len(held) >= len(confirmed)
            assert len(held) <= len(confirmed) + 1
            assert [(r.id, r.changes[0].ts_ms - 1000) for r in held[: len(confirmed)]] == confirmed
            for record in held:
                seq = record.changes[0].ts_ms - 1000
                assert [c.value for c in record.changes] == [seq * 100 + i for i in range(25)]
        assert [r.id for r in records] == sorted(r.id for r in records)
        assert [r.device_id for r in records] == sorted(r.device_id or "" for r in records)
