"""The historian writer against a real database that goes away and comes back (S-08).

PostgreSQL is taken away from one test without touching the shared server: the store connects
through a :class:`TcpProxy` that the test cuts (every connection reset, new ones refused) and
resumes. SQLite runs behind a wrapper that raises ``OperationalError`` on command.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from andon.storage.historian_writer import HistorianWriter
from andon.storage.migrate import upgrade_database
from andon.storage.store import HistorianStore, open_historian_store
from andon.storage.types import Sample
from andon.testing.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

TAGS = ("g/e/d/a", "g/e/d/b", "g/e/d/c")
FAST_RETRY = (0.01, 0.2)


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _chunk(number: int, per_tag: int = 10) -> list[Sample]:
    """Samples of every tag, timestamps increasing with ``number``; value = timestamp."""
    base = 1_700_000_000_000 + number * per_tag
    return [Sample(t, base + i, base + i, datatype=4) for i in range(per_tag) for t in TAGS]


def _assert_stored_exactly_once_in_order(store: HistorianStore, submitted: list[Sample]) -> None:
    assert store.count() == len(submitted)
    for tag in TAGS:
        expected = [(s.ts_ms, s.value) for s in submitted if s.tag == tag]
        stored = store.history(tag, 0, 2**62, limit=len(expected) + 1)
        assert [(s.ts_ms, s.value) for s in stored] == expected


class Producer:
    """Submits a steady stream of chunks from a thread until stopped."""

    def __init__(self, writer: HistorianWriter) -> None:
        self.writer = writer
        self.submitted: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        number = 0
        while not self._stop.is_set():
            chunk = _chunk(number)
            assert self.writer.submit(chunk, timeout=60), "writer blocked for a minute"
            self.submitted += chunk
            number += 1
            time.sleep(0.001)  # pacing of the stream, not a wait for a condition

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join(timeout=60)
        assert not self._thread.is_alive()
        return self.submitted


@pytest.fixture
def proxied_postgres(postgres_url: str) -> Iterator[tuple[TcpProxy, HistorianStore]]:
    upgrade_database(postgres_url)
    direct = make_url(postgres_url)
    with TcpProxy(direct.host or "127.0.0.1", direct.port or 5432) as proxy:
        store = open_historian_store(direct.set(port=proxy.port).render_as_string(False))
        try:
            yield proxy, store
        finally:
            store.close()


@pytest.mark.postgres
def test_s08_postgres_outage_spools_to_disk_and_everything_arrives_once_in_order(
    proxied_postgres: tuple[TcpProxy, HistorianStore], tmp_path: Path
) -> None:
    proxy, store = proxied_postgres
    writer = HistorianWriter(
        store,
        queue_capacity=1_000,
        max_batch=200,
        max_batch_delay_s=0.005,
        retry_backoff_s=FAST_RETRY,
        spool_path=tmp_path / "spool.db",
    )
    writer.start()
    producer = Producer(writer)
    wait_for(lambda: writer.stats().committed_total >= 2_000, what="first commits")
    proxy.cut(refuse=True)
    wait_for(lambda: not writer.stats().database_up, what="outage noticed")
    # Three times what the in-memory queue holds: only the disk spool can take it.
    wait_for(lambda: writer.stats().spool_samples >= 3_000, what="spool used")
    assert writer.stats().queued <= 1_000
    proxy.resume()
    wait_for(lambda: writer.stats().database_up, what="database back")
    wait_for(lambda: not writer.stats().spooling, what="spool drained")
    submitted = producer.stop()
    assert writer.flush(timeout=60)
    _assert_stored_exactly_once_in_order(store, submitted)
    stats = writer.stats()
    # A cut between COMMIT and its answer makes the writer write that batch again; the store
    # ignores the duplicates, so fewer rows than samples may count as inserted by the writer.
    assert stats.committed_total >= len(submitted) >= stats.inserted_total
    assert stats.failures_total > 0
    assert (stats.queued, stats.spool_batches, stats.quarantined_total) == (0, 0, 0)
    assert writer.stop(timeout=60)


@pytest.mark.postgres
def test_postgres_writer_stopped_during_outage_is_drained_by_the_next_one(
    proxied_postgres: tuple[TcpProxy, HistorianStore], tmp_path: Path
) -> None:
    proxy, store = proxied_postgres
    spool_path = tmp_path / "spool.db"
    writer = HistorianWriter(
        store, queue_capacity=1_000, retry_backoff_s=FAST_RETRY, spool_path=spool_path
    )
    writer.start()
    submitted = _chunk(0)
    assert writer.submit(submitted)
    assert writer.flush(timeout=60)
    proxy.cut(refuse=True)
    for number in range(1, 200):  # 5,970 samples, six times the queue
        chunk = _chunk(number)
        assert writer.submit(chunk, timeout=60)
        submitted += chunk
    assert writer.stop(timeout=60)
    assert (writer.stats().queued, writer.stats().spool_samples) == (0, len(submitted) - 30)

    proxy.resume()
    successor = HistorianWriter(store, retry_backoff_s=FAST_RETRY, spool_path=spool_path)
    successor.start()
    assert successor.flush(timeout=60)
    _assert_stored_exactly_once_in_order(store, submitted)
    assert successor.stop(timeout=60)
    assert successor.stats().spool_batches == 0


@pytest.mark.postgres
def test_postgres_half_open_link_holds_the_writer_and_loses_nothing(
    proxied_postgres: tuple[TcpProxy, HistorianStore], tmp_path: Path
) -> None:
    """A paused link gives no error (the kernel ACKs): the write in flight waits, the queue
    applies back-pressure, and everything arrives once the link forwards again."""
    proxy, store = proxied_postgres
    writer = HistorianWriter(
        store, queue_capacity=300, retry_backoff_s=FAST_RETRY, spool_path=tmp_path / "s.db"
    )
    writer.start()
    submitted = _chunk(0)
    assert writer.submit(submitted)
    assert writer.flush(timeout=60)
    proxy.pause()
    number = 1
    while writer.submit(_chunk(number), timeout=0.5):
        submitted += _chunk(number)
        number += 1
        assert number < 1_000, "no back-pressure"
    proxy.resume()
    assert writer.flush(timeout=60)
    _assert_stored_exactly_once_in_order(store, submitted)
    assert writer.stop(timeout=60)


class SwitchStore:
    """A real store that fails like an unreachable database while ``down`` is set."""

    def __init__(self, inner: HistorianStore) -> None:
        self.inner = inner
        self.down = threading.Event()

    def write_batch(self, samples: Sequence[Sample]) -> int:
        if self.down.is_set():
            raise OperationalError("BEGIN", {}, Exception("unable to open database file"))
        return self.inner.write_batch(samples)

    def quarantine(self, tag: str, ts_ms: int, raw: str, reason: str) -> None:
        if self.down.is_set():
            raise OperationalError("BEGIN", {}, Exception("unable to open database file"))
        self.inner.quarantine(tag, ts_ms, raw, reason)


def test_sqlite_outage_and_restart_lose_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'historian.db'}"
    upgrade_database(url)
    store = open_historian_store(url)
    switch = SwitchStore(store)
    spool_path = tmp_path / "spool.db"
    writer = HistorianWriter(
        switch,  # type: ignore[arg-type]  # write_batch and quarantine are all it uses
        queue_capacity=500,
        max_batch=100,
        retry_backoff_s=FAST_RETRY,
        spool_path=spool_path,
    )
    writer.start()
    submitted: list[Sample] = []
    poison = Sample("g/e/d/a", 5, 2**70, datatype=4)
    for number in range(100):
        chunk = _chunk(number)
        if number == 30:
            switch.down.set()
            chunk = [*chunk[:7], poison, *chunk[7:]]
        assert writer.submit(chunk, timeout=60)
        submitted += [s for s in chunk if s is not poison]
    wait_for(lambda: writer.stats().spooling, what="spooling")
    assert writer.stop(timeout=60)  # the restart happens during the outage
    switch.down.clear()
    successor = HistorianWriter(
        switch,  # type: ignore[arg-type]
        retry_backoff_s=FAST_RETRY,
        spool_path=spool_path,
    )
    successor.start()
    assert successor.flush(timeout=60)
    _assert_stored_exactly_once_in_order(store, submitted)
    assert [(q.tag, q.raw) for q in store.quarantined()] == [("g/e/d/a", repr(2**70))]
    assert successor.stop(timeout=60)
    store.close()
