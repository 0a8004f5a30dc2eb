"""The single historian writer: draining, flush, back-pressure, outages, poison records."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from andon.storage.historian_writer import HistorianWriter
from andon.storage.insert_process import InsertProcessStore
from andon.storage.migrate import upgrade_database
from andon.storage.store import HistorianStore, open_historian_store
from andon.storage.types import Sample
from andon.testing.memory_historian import InMemoryHistorianStore
from andon.testing.processes import wait_until

T0 = 1_700_000_000_000
FAST_RETRY = (0.001, 0.01)


def _samples(count: int, tag: str = "g/e/d/m", start: int = 0) -> list[Sample]:
    return [Sample(tag, T0 + start + i, float(i), datatype=10) for i in range(count)]


class RecordingStore(InMemoryHistorianStore):
    """Remembers the order in which samples were committed."""

    def __init__(self) -> None:
        super().__init__()
        self.committed: list[Sample] = []
        self.batch_sizes: list[int] = []

    def write_batch(self, samples: Sequence[Sample]) -> int:
        inserted = super().write_batch(samples)
        self.committed.extend(samples)
        self.batch_sizes.append(len(samples))
        return inserted


class OutageStore(RecordingStore):
    """Fails like an unreachable database ``failures`` times, then works."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures_left = failures

    def write_batch(self, samples: Sequence[Sample]) -> int:
        if self.failures_left > 0:
            self.failures_left -= 1
            raise OperationalError("INSERT", {}, ConnectionRefusedError("connection refused"))
        return super().write_batch(samples)


class BlockingStore(RecordingStore):
    """write_batch waits until the test releases it."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def write_batch(self, samples: Sequence[Sample]) -> int:
        self.entered.set()
        assert self.release.wait(timeout=30), "test never released the store"
        return super().write_batch(samples)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[HistorianStore]:
    url = f"sqlite:///{tmp_path / 'historian.db'}"
    upgrade_database(url)
    store = open_historian_store(url)
    yield store
    store.close()


def test_drains_and_commits_everything(sqlite_store: HistorianStore) -> None:
    writer = HistorianWriter(sqlite_store, max_batch=1_000, max_batch_delay_s=0.001)
    writer.start()
    for chunk in range(10):
        assert writer.submit(_samples(777, start=chunk * 777))
    assert writer.stop(timeout=30)
    assert sqlite_store.count() == 7_770
    stats = writer.stats()
    assert (stats.queued, stats.committed_total, stats.inserted_total) == (0, 7_770, 7_770)
    assert stats.batches_total >= 8  # 7,770 samples, at most 1,000 per batch
    assert stats.database_up
    assert stats.failures_total == 0


def test_batches_never_exceed_max_batch_and_keep_order() -> None:
    store = RecordingStore()
    writer = HistorianWriter(store, max_batch=100, max_batch_delay_s=0.001)
    submitted = _samples(1_050)
    assert writer.submit(submitted[:1_000])  # queued before start: taken in full batches
    assert writer.submit(submitted[1_000:])
    writer.start()
    assert writer.flush(timeout=30)
    assert max(store.batch_sizes) == 100
    assert store.committed == submitted
    assert writer.stop(timeout=30)


def test_flush_waits_for_everything_submitted_before() -> None:
    store = RecordingStore()
    writer = HistorianWriter(store, max_batch_delay_s=10.0)  # would otherwise wait for more
    writer.start()
    assert writer.submit(_samples(10))
    assert writer.flush(timeout=30)
    assert store.count() == 10
    assert writer.flush(timeout=0)  # nothing pending: immediate
    assert writer.stop(timeout=30)


def test_back_pressure_blocks_and_times_out_without_dropping() -> None:
    store = BlockingStore()
    writer = HistorianWriter(store, queue_capacity=10, max_batch=10, retry_backoff_s=FAST_RETRY)
    writer.start()
    assert writer.submit(_samples(10))
    assert store.entered.wait(timeout=30)
    # The batch in flight still counts: the queue is full until it is committed.
    assert writer.stats().queued == 10
    assert not writer.submit(_samples(1, start=100), timeout=0.05)
    assert writer.stats().queued == 10

    unblocked = threading.Event()

    def producer() -> None:
        writer.submit(_samples(5, start=200))  # no timeout: blocks until there is room
        unblocked.set()

    thread = threading.Thread(target=producer)
    thread.start()
    assert not unblocked.is_set()
    store.release.set()
    assert unblocked.wait(timeout=30)
    thread.join(timeout=30)
    assert writer.flush(timeout=30)
    assert store.count() == 15
    assert writer.stop(timeout=30)


def test_outage_loses_nothing_and_keeps_order(caplog: pytest.LogCaptureFixture) -> None:
    store = OutageStore(failures=5)
    writer = HistorianWriter(store, max_batch=50, retry_backoff_s=FAST_RETRY)
    submitted = _samples(120)
    with caplog.at_level(logging.INFO, logger="andon.storage.historian_writer"):
        writer.start()
        for i in range(0, 120, 30):
            assert writer.submit(submitted[i : i + 30])
        assert writer.flush(timeout=30)
    assert store.committed == submitted
    stats = writer.stats()
    assert (stats.failures_total, stats.committed_total, stats.database_up) == (5, 120, True)
    messages = [r.getMessage() for r in caplog.records]
    # The first failure and the recovery, not every retry.
    assert len(messages) == 2
    assert "unavailable" in messages[0]
    assert "available again" in messages[1]
    assert writer.stop(timeout=30)


@pytest.fixture
def insert_process_store(tmp_path: Path) -> Iterator[HistorianStore]:
    """The server's arrangement: SQLite, the inserts in a child process."""
    url = f"sqlite:///{tmp_path / 'historian.db'}"
    upgrade_database(url)
    local = open_historian_store(url)
    store = InsertProcessStore(local, url)
    yield store
    store.close()
    local.close()


@pytest.mark.parametrize("backend", ["memory", "sqlite", "insert_process"])
def test_poison_sample_is_quarantined_and_the_rest_written(
    backend: str, request: pytest.FixtureRequest
) -> None:
    store: HistorianStore = (
        InMemoryHistorianStore()
        if backend == "memory"
        else request.getfixturevalue(f"{backend}_store")
    )
    writer = HistorianWriter(store, retry_backoff_s=FAST_RETRY)
    good = [Sample("g/e/d/count", T0 + i, i, datatype=4) for i in range(100)]
    poison = [Sample("g/e/d/count", T0 + 1_000, 2**70), Sample("g/e/d/text", T0, "a\x00b")]
    batch = good[:40] + poison[:1] + good[40:70] + poison[1:] + good[70:]
    writer.start()
    assert writer.submit(batch)
    assert writer.flush(timeout=30)
    assert store.count() == 100
    assert [s.value for s in store.history("g/e/d/count", T0, T0 + 2_000)] == list(range(100))
    records = store.quarantined()
    assert [(r.tag, r.ts_ms, r.raw) for r in records] == [
        ("g/e/d/count", T0 + 1_000, repr(2**70)),
        ("g/e/d/text", T0, repr("a\x00b")),
    ]
    assert all("UnstorableValueError" in r.reason for r in records)
    stats = writer.stats()
    assert (stats.quarantined_total, stats.committed_total) == (2, 100)
    assert writer.stop(timeout=30)


def test_submit_after_stop_is_refused() -> None:
    writer = HistorianWriter(InMemoryHistorianStore())
    writer.start()
    assert writer.stop(timeout=30)
    with pytest.raises(RuntimeError, match="stopped"):
        writer.submit(_samples(1))


def test_stop_gives_up_when_the_database_stays_down() -> None:
    store = OutageStore(failures=10**9)
    writer = HistorianWriter(store, retry_backoff_s=FAST_RETRY)
    writer.start()
    assert writer.submit(_samples(3))
    assert not writer.stop(timeout=0.2)
    assert writer.stats().queued == 3
    assert not writer.stats().database_up


class GatheringDerived:
    """A derived write that counts how often it reached the database and what it carried."""

    def __init__(self, rows: int, log: list[int]) -> None:
        self.rows, self._log = rows, log

    def merge(self, newer: GatheringDerived) -> None:
        self.rows += newer.rows

    def write(self, fence: object = None) -> None:
        self._log.append(self.rows)


def test_derived_changes_gather_for_the_delay_then_go_in_one_write() -> None:
    written: list[int] = []
    writer = HistorianWriter(InMemoryHistorianStore(), derived_max_delay_s=30.0)
    writer.start()
    try:
        for _ in range(5):
            assert writer.submit_derived(GatheringDerived(2, written), timeout=10)
            assert writer.submit(_samples(3), timeout=10)
        # Samples are not held back by the gathering, derived changes are (the delay is long).
        assert writer.flush(timeout=10)  # a flush writes what gathered, at once
        assert written == [10]
        assert writer.stats().committed_total == 15
    finally:
        assert writer.stop(timeout=10)


def test_gathered_derived_changes_are_written_when_the_delay_passes() -> None:
    written: list[int] = []
    done = threading.Event()

    class Signalling(GatheringDerived):
        def write(self, fence: object = None) -> None:
            super().write(fence)
            done.set()

    writer = HistorianWriter(InMemoryHistorianStore(), derived_max_delay_s=0.2)
    writer.start()
    try:
        assert writer.submit_derived(Signalling(4, written), timeout=10)
        assert writer.submit_derived(GatheringDerived(1, written), timeout=10)
        assert done.wait(10)  # no flush and no more samples: the delay alone writes them
        assert written == [5]
    finally:
        assert writer.stop(timeout=10)


def test_derived_writes_do_not_cut_the_batch_of_samples_short() -> None:
    """The MES submits a derived write per message: one between every two messages' samples
    must not make a transaction per message."""
    order: list[str] = []

    class OrderStore(RecordingStore):
        def write_batch(self, samples: Sequence[Sample]) -> int:
            order.append(f"samples {len(samples)}")
            return super().write_batch(samples)

    class OrderDerived(GatheringDerived):
        def write(self, fence: object = None) -> None:
            order.append(f"derived {self.rows}")

    store = OrderStore()
    writer = HistorianWriter(store, max_batch=1_000, derived_max_delay_s=0.0)
    submitted = _samples(250)
    for first in range(0, 250, 25):  # queued before start: the writer finds them all at once
        assert writer.submit(submitted[first : first + 25])
        assert writer.submit_derived(OrderDerived(1, []))
    writer.start()
    try:
        assert writer.flush(timeout=10)
        # One transaction of samples, then the derived writes (merged), never before them.
        assert order == ["samples 250", "derived 10"]
        assert store.committed == submitted
    finally:
        assert writer.stop(timeout=10)


def _gathering(writer: HistorianWriter) -> bool:
    with writer._lock:
        return writer._gathering


def _wait_until_gathering(writer: HistorianWriter) -> None:
    """Until the writer has taken what is queued and waits for a fuller batch."""
    wait_until(lambda: _gathering(writer), 10, "the writer never began to gather a batch")


def test_a_batch_filled_while_the_writer_gathers_is_written_without_waiting_out_the_delay() -> None:
    """While the writer waits for a fuller batch (max_batch_delay_s), the submit that fills the
    batch wakes it: a full batch never waits out the delay (the others need not wake it)."""
    full = threading.Event()

    class FullBatchStore(RecordingStore):
        def write_batch(self, samples: Sequence[Sample]) -> int:
            inserted = super().write_batch(samples)
            if self.count() == 100:
                full.set()
            return inserted

    store = FullBatchStore()
    writer = HistorianWriter(store, max_batch=100, max_batch_delay_s=60.0)
    writer.start()
    try:
        submitted = _samples(100)
        assert writer.submit(submitted[:30])
        # Only once the writer has taken these and waits for more does the rest test anything
        # (submitted at once, all 100 would simply be taken as one full batch).
        _wait_until_gathering(writer)
        for first in range(30, 100, 10):
            assert writer.submit(submitted[first : first + 10])
        assert full.wait(timeout=10)  # long before the 60 s delay
        assert store.committed == submitted
        assert store.batch_sizes == [100]
    finally:
        assert writer.stop(timeout=10)


def test_a_submit_waiting_for_room_ends_the_writers_gathering() -> None:
    """A queue smaller than a batch fills before the batch does: the submit that must wait for
    room makes a gathering writer write what it has, instead of waiting out the delay."""
    store = RecordingStore()
    writer = HistorianWriter(store, queue_capacity=50, max_batch=100, max_batch_delay_s=60.0)
    writer.start()
    try:
        submitted = _samples(60)
        assert writer.submit(submitted[:50])  # the queue is full; the writer gathers for more
        _wait_until_gathering(writer)
        assert writer.submit(submitted[50:], timeout=10)  # long before the 60 s delay
        assert writer.flush(timeout=10)
        assert store.committed == submitted
        assert store.batch_sizes == [50, 10]
    finally:
        assert writer.stop(timeout=10)
