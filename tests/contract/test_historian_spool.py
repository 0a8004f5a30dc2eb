"""The historian's disk spool and the writer's use of it (checklist S-08).

The spool alone: exact round-trip, order, ack, persistence, limits, kill -9. The writer with a
spool, against stores that fail like an unreachable database on command: the queue moves to
disk during the outage, memory stays bounded, nothing is lost or reordered, the spool is
drained first when the database returns, stop() during an outage leaves everything on disk for
the next writer, and poison samples coming out of the spool are quarantined.
"""

from __future__ import annotations

import math
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from andon.storage.historian_writer import HistorianWriter
from andon.storage.types import Sample
from andon.storage.write_spool import (
    HistorianSpool,
    HistorianSpoolFullError,
    UnspooledValue,
    decode_samples,
    encode_samples,
)
from andon.testing.memory_historian import InMemoryHistorianStore

T0 = 1_700_000_000_000
FAST_RETRY = (0.001, 0.02)


def _samples(count: int, tag: str = "g/e/d/m", start: int = 0) -> list[Sample]:
    return [Sample(tag, T0 + start + i, float(i), datatype=10) for i in range(count)]


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.005)


class SwitchStore(InMemoryHistorianStore):
    """Fails like an unreachable database while ``down`` is set; records the commit order."""

    def __init__(self) -> None:
        super().__init__()
        self.down = threading.Event()
        self.committed: list[Sample] = []

    def write_batch(self, samples: Sequence[Sample]) -> int:
        if self.down.is_set():
            raise OperationalError("INSERT", {}, ConnectionRefusedError("connection refused"))
        inserted = super().write_batch(samples)
        self.committed.extend(samples)
        return inserted

    def quarantine(self, tag: str, ts_ms: int, raw: str, reason: str) -> None:
        if self.down.is_set():
            raise OperationalError("INSERT", {}, ConnectionRefusedError("connection refused"))
        super().quarantine(tag, ts_ms, raw, reason)


# -- the spool alone ---------------------------------------------------------------------------


def test_encoding_round_trips_every_value_type_exactly() -> None:
    samples = [
        Sample("a", T0, True, 0, True, 11),
        Sample("a", T0 + 1, 2**70, 1, False, 8),  # out of range: the store will quarantine it
        Sample("b/\u00e9", T0 - 5, -0.0, 192, False, 10),
        Sample("b/\u00e9", T0 + 2, math.inf, 192, True, 10),
        Sample("c", T0, "x\x00\ud800y", 64, False, 12),
        Sample("d", T0, b"\x00\xff", 192, False, 17),
        Sample("e", T0, None, 0, False, 0),
    ]
    decoded = decode_samples(encode_samples(samples))
    assert decoded == tuple(samples)
    assert [type(s.value) for s in decoded] == [type(s.value) for s in samples]
    assert math.copysign(1.0, decoded[2].value) == -1.0  # type: ignore[arg-type]
    nan = decode_samples(encode_samples([Sample("f", T0, math.nan, datatype=10)]))[0]
    assert isinstance(nan.value, float)
    assert math.isnan(nan.value)
    odd = Sample("g", T0, (1, 2), datatype=0)  # type: ignore[arg-type]  # not a SampleValue
    (back,) = decode_samples(encode_samples([odd]))
    assert isinstance(back.value, UnspooledValue)
    assert repr(back.value) == repr((1, 2))


def test_batches_come_back_in_order_and_ack_removes_exactly_those(tmp_path: Path) -> None:
    with HistorianSpool(tmp_path / "s.db") as spool:
        ids = [spool.append(_samples(3, start=i * 10)) for i in range(5)]
        assert ids == sorted(ids)
        assert [(i, list(s)) for i, s in spool.peek(10)] == [
            (ids[i], _samples(3, start=i * 10)) for i in range(5)
        ]
        assert [i for i, _ in spool.peek(2)] == ids[:2]
        assert spool.ack([ids[0], ids[2], 999_999]) == 2
        assert [i for i, _ in spool.peek(10)] == [ids[1], ids[3], ids[4]]
        spool.replace(ids[1], _samples(1, start=12))
        stats = spool.stats()
        assert (stats.batches, stats.samples) == (3, 7)
        assert stats.oldest_created_ms is not None
        assert spool.counts() == (stats.batches, stats.samples, stats.bytes)


def test_contents_and_totals_survive_a_reopen(tmp_path: Path) -> None:
    with HistorianSpool(tmp_path / "s.db") as spool:
        first, second = spool.append_many([_samples(4), _samples(6, start=100)])
        spool.ack([first])
        before = spool.stats()
    with HistorianSpool(tmp_path / "s.db") as spool:
        assert spool.stats() == before
        assert (before.batches, before.samples) == (1, 6)
        assert (before.appended_batches_total, before.appended_samples_total) == (2, 10)
        assert (before.acked_batches_total, before.acked_samples_total) == (1, 4)
        assert spool.peek(10) == [(second, tuple(_samples(6, start=100)))]
        third = spool.append(_samples(1, start=500))
        assert third > second  # ids are never reused


def test_a_full_spool_refuses_clearly_and_writes_nothing(tmp_path: Path) -> None:
    with HistorianSpool(tmp_path / "s.db", max_bytes=2_000) as spool:
        spool.append(_samples(20))
        with pytest.raises(HistorianSpoolFullError, match="full"):
            spool.append_many([_samples(20, start=100)] * 20)
        assert spool.stats().batches == 1
        assert spool.stats().appended_batches_total == 1
        spool.ack([i for i, _ in spool.peek(1)])
        spool.append(_samples(20, start=100))  # room again


def test_an_undecodable_batch_is_set_aside_and_the_rest_flows(tmp_path: Path) -> None:
    with HistorianSpool(tmp_path / "s.db") as spool:
        first, bad, last = spool.append_many([_samples(1), _samples(2), _samples(3)])
    with sqlite3.connect(tmp_path / "s.db") as raw:
        raw.execute("UPDATE batches SET payload = x'07' WHERE id = ?", (bad,))
    with HistorianSpool(tmp_path / "s.db") as spool:
        assert [i for i, _ in spool.peek(10)] == [first, last]
        assert (spool.stats().batches, spool.stats().unreadable_batches_total) == (2, 1)
    with sqlite3.connect(tmp_path / "s.db") as raw:
        assert raw.execute("SELECT id FROM unreadable").fetchall() == [(bad,)]


CHILD = """
import sys
from pathlib import Path
from andon.storage.types import Sample
from andon.storage.write_spool import HistorianSpool

spool = HistorianSpool(Path(sys.argv[1]))
seq = int(sys.argv[2])
while True:
    batch = [Sample("g/e/d/m", seq * 1000 + i, seq * 1000 + i, datatype=4) for i in range(50)]
    print(spool.append(batch), seq, flush=True)  # printed once the append returned (durable)
    seq += 1
"""


def _append_until_killed(path: Path, first_seq: int, confirmations: int) -> list[tuple[int, int]]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(first_seq)], stdout=subprocess.PIPE, text=True
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    confirmed: list[tuple[int, int]] = []
    try:
        while len(confirmed) < confirmations:
            line = lines.get(timeout=60)
            assert line is not None, "the child exited on its own"
            confirmed.append((int(line.split()[0]), int(line.split()[1])))
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    while (line := lines.get(timeout=30)) is not None:  # printed just before the kill
        confirmed.append((int(line.split()[0]), int(line.split()[1])))
    return confirmed


def test_kill_9_while_appending_keeps_every_confirmed_batch_and_no_corruption(
    tmp_path: Path,
) -> None:
    path = tmp_path / "spool.db"
    confirmed_by_round: list[list[tuple[int, int]]] = []
    for round_no, count in enumerate((7, 60, 25)):
        confirmed_by_round.append(_append_until_killed(path, round_no * 10_000, count))
        with sqlite3.connect(path) as raw:
            assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        with HistorianSpool(path) as spool:
            held = spool.peek(100_000)
        assert [i for i, _ in held] == sorted(i for i, _ in held)
        for _batch_id, samples in held:  # every batch whole, never half written
            seq = samples[0].ts_ms // 1000
            assert [s.value for s in samples] == [seq * 1000 + i for i in range(50)]
        for number, confirmed in enumerate(confirmed_by_round):
            mine = [(i, b[0].ts_ms // 1000) for i, b in held if b[0].ts_ms // 10_000_000 == number]
            # Every confirmed batch, plus at most the one the kill interrupted after its commit.
            assert mine[: len(confirmed)] == confirmed
            assert len(mine) - len(confirmed) in (0, 1)
            assert [seq for _, seq in mine] == list(
                range(number * 10_000, number * 10_000 + len(mine))
            )


# -- the writer with a spool -------------------------------------------------------------------


def test_outage_moves_the_queue_to_disk_and_drains_it_in_order(tmp_path: Path) -> None:
    store = SwitchStore()
    writer = HistorianWriter(
        store,
        queue_capacity=500,
        max_batch=100,
        max_batch_delay_s=0.001,
        retry_backoff_s=FAST_RETRY,
        spool_path=tmp_path / "spool.db",
    )
    writer.start()
    submitted = _samples(6_000)
    for i in range(0, 1_000, 50):
        assert writer.submit(submitted[i : i + 50], timeout=30)
    assert writer.flush(timeout=30)
    store.down.set()
    # Twelve times the queue's capacity while the database is down: only the spool can hold it.
    for i in range(1_000, 5_000, 50):
        assert writer.submit(submitted[i : i + 50], timeout=30)
        assert writer.stats().queued <= 500
    wait_for(lambda: writer.stats().spool_samples >= 4_000 - 250, what="queue moved to disk")
    stats = writer.stats()
    assert stats.spooling
    assert not stats.database_up
    assert stats.spool_bytes > 0
    store.down.clear()
    for i in range(5_000, 6_000, 50):
        assert writer.submit(submitted[i : i + 50], timeout=30)
    assert writer.flush(timeout=30)
    assert store.committed == submitted  # exactly once, in order: spool first, then memory
    stats = writer.stats()
    assert (stats.spool_batches, stats.spooling, stats.queued, stats.database_up) == (
        0, False, 0, True,
    )  # fmt: skip
    assert stats.inserted_total == 6_000
    assert writer.stop(timeout=30)


def test_stop_during_an_outage_spools_everything_and_the_next_writer_drains_it(
    tmp_path: Path,
) -> None:
    store = SwitchStore()
    store.down.set()
    spool_path = tmp_path / "spool.db"
    writer = HistorianWriter(store, retry_backoff_s=(60.0, 60.0), spool_path=spool_path)
    writer.start()
    submitted = _samples(1_234)
    assert writer.submit(submitted[:1_000])
    assert writer.submit(submitted[1_000:])
    assert writer.stop(timeout=30)  # long backoff: stop() must not wait for the next attempt
    stats = writer.stats()
    assert (stats.queued, stats.spool_samples, store.committed) == (0, 1_234, [])
    with HistorianSpool(spool_path) as spool:
        assert [s for _, batch in spool.peek(1_000) for s in batch] == submitted

    store.down.clear()
    successor = HistorianWriter(store, retry_backoff_s=FAST_RETRY, spool_path=spool_path)
    assert successor.stats().spool_samples == 1_234
    assert not successor.flush(timeout=0)  # the spool counts as pending
    successor.start()
    assert successor.submit(_samples(10, start=5_000))
    assert successor.flush(timeout=30)
    assert store.committed == submitted + _samples(10, start=5_000)
    assert successor.stop(timeout=30)
    assert successor.stats().spool_batches == 0


def test_s08_poison_samples_in_spooled_batches_are_quarantined_and_the_rest_written(
    tmp_path: Path,
) -> None:
    store = SwitchStore()
    store.down.set()
    writer = HistorianWriter(store, retry_backoff_s=FAST_RETRY, spool_path=tmp_path / "s.db")
    writer.start()
    good = [Sample("g/e/d/count", T0 + i, i, datatype=4) for i in range(60)]
    poison = [Sample("g/e/d/count", T0 + 1_000, 2**70), Sample("g/e/d/odd", T0, (1, 2))]  # type: ignore[arg-type]
    assert writer.submit(good[:30] + poison[:1] + good[30:50] + poison[1:] + good[50:])
    wait_for(lambda: writer.stats().spool_samples == 62, what="batch spooled")
    store.down.clear()
    assert writer.flush(timeout=30)
    assert store.committed == good
    assert [(r.tag, r.raw) for r in store.quarantined()] == [
        ("g/e/d/count", repr(2**70)),
        ("g/e/d/odd", repr((1, 2))),
    ]
    assert writer.stats().quarantined_total == 2
    assert writer.stop(timeout=30)


def test_a_full_spool_applies_back_pressure_and_drops_nothing(tmp_path: Path) -> None:
    store = SwitchStore()
    store.down.set()
    writer = HistorianWriter(
        store,
        queue_capacity=100,
        max_batch=50,
        retry_backoff_s=FAST_RETRY,
        spool_path=tmp_path / "s.db",
        spool_max_bytes=4_000,
    )
    writer.start()
    submitted: list[Sample] = []
    while True:  # until the spool is full and the queue behind it too
        chunk = _samples(25, start=len(submitted))
        if not writer.submit(chunk, timeout=0.5):
            break
        submitted += chunk
        assert len(submitted) < 10_000, "the spool never filled up"
    stats = writer.stats()
    assert stats.spool_bytes <= 4_000
    assert stats.queued > 0
    store.down.clear()
    assert writer.flush(timeout=30)
    assert store.committed == submitted
    assert writer.stop(timeout=30)


def test_flush_during_an_outage_returns_only_once_the_spooled_samples_are_committed(
    tmp_path: Path,
) -> None:
    store = SwitchStore()
    store.down.set()
    writer = HistorianWriter(store, retry_backoff_s=FAST_RETRY, spool_path=tmp_path / "s.db")
    writer.start()
    assert writer.submit(_samples(100))
    wait_for(lambda: writer.stats().spool_samples == 100, what="first batch spooled")
    assert writer.submit(_samples(50, start=100))
    results: list[bool] = []
    flusher = threading.Thread(target=lambda: results.append(writer.flush(timeout=60)))
    flusher.start()
    wait_for(lambda: writer.stats().spool_samples == 150, what="everything spooled")
    assert results == []  # still waiting: nothing is committed
    store.down.clear()
    flusher.join(timeout=60)
    assert results == [True]
    assert store.committed == _samples(100) + _samples(50, start=100)
    assert writer.stop(timeout=30)


def test_derived_records_wait_for_the_spooled_samples_before_them(tmp_path: Path) -> None:
    """Derived (MES) records are written after the samples submitted before them, also when
    those samples went to the spool during an outage."""
    store = SwitchStore()
    store.down.set()
    seen_at_write: list[int] = []

    class Derived:
        rows = 1

        def merge(self, newer: object) -> None:
            pass

        def write(self, fence: object = None) -> None:
            if store.down.is_set():
                raise OperationalError("INSERT", {}, ConnectionRefusedError("connection refused"))
            seen_at_write.append(len(store.committed))

    writer = HistorianWriter(
        store, retry_backoff_s=FAST_RETRY, spool_path=tmp_path / "s.db", derived_max_delay_s=0.0
    )
    writer.start()
    try:
        assert writer.submit(_samples(100))
        assert writer.submit_derived(Derived())  # type: ignore[arg-type]
        wait_for(lambda: writer.stats().spool_samples == 100, what="samples spooled")
        store.down.clear()
        assert writer.flush(timeout=30)
        assert seen_at_write == [100]  # the spool was drained first
    finally:
        assert writer.stop(timeout=30)
