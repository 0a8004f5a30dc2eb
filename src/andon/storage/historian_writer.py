"""The single historian writer: one thread, one bounded queue, batched transactions.

Producers (the ingest pipeline) call :meth:`HistorianWriter.submit`; it blocks while the queue
is full, which is the back-pressure that slows ingest down instead of dropping data. The
writer thread takes as many queued samples as fit in one batch and hands them to the store:

* unreachable database (transient errors): keep the batch, retry with exponential backoff,
  log only the first failure and the recovery; nothing is lost or reordered;
* any other error is a property of the data: the batch is split in halves until the poison
  sample(s) are isolated, the rest is written in order and each poison sample is quarantined
  with the reason.

Samples count as queued until their batch is committed, so ``queue_capacity`` bounds all the
samples the writer holds in memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import exc as sa_exc

from andon.storage.codec import INT64_MAX, INT64_MIN
from andon.storage.store import HistorianStore
from andon.storage.types import Sample

__all__ = [
    "Flush",
    "HistorianWriter",
    "HistorianWriterStats",
    "Stop",
    "WriteSamples",
    "WriterCommand",
    "is_transient_error",
]

log = logging.getLogger(__name__)

_REASON_MAX_CHARS = 2_000


@dataclass(frozen=True, slots=True)
class WriteSamples:
    samples: Sequence[Sample]


@dataclass(frozen=True, slots=True)
class Flush:
    """Set ``done`` once every sample queued before this command is committed."""

    done: threading.Event


@dataclass(frozen=True, slots=True)
class Stop:
    """Drain everything queued before this command, then end the thread."""


WriterCommand = WriteSamples | Flush | Stop


@dataclass(frozen=True, slots=True)
class HistorianWriterStats:
    queued: int  # samples submitted and not yet committed (includes the batch in flight)
    committed_total: int  # samples in committed batches (duplicates included)
    inserted_total: int  # new rows (duplicates of stored samples excluded)
    batches_total: int
    last_batch_size: int
    last_batch_seconds: float
    failures_total: int  # failed write attempts, transient or not
    quarantined_total: int
    database_up: bool


class _Aborted(Exception):
    """stop() gave up waiting for the database; the thread ends with samples unwritten."""


def is_transient_error(error: BaseException) -> bool:
    """Errors that say "the database is unreachable or busy", not "this data is bad"."""
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(
        error,
        sa_exc.OperationalError
        | sa_exc.InterfaceError
        | sa_exc.DisconnectionError
        | sa_exc.TimeoutError
        | ConnectionError
        | TimeoutError,
    )


class HistorianWriter:
    def __init__(
        self,
        store: HistorianStore,
        *,
        queue_capacity: int = 100_000,
        max_batch: int = 5_000,
        max_batch_delay_s: float = 0.05,
        retry_backoff_s: tuple[float, float] = (0.2, 5.0),
    ) -> None:
        if queue_capacity < 1 or max_batch < 1:
            raise ValueError("queue_capacity and max_batch must be positive")
        self._store = store
        self._capacity = queue_capacity
        self._max_batch = max_batch
        self._max_batch_delay_s = max_batch_delay_s
        self._backoff_min, self._backoff_max = retry_backoff_s
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._commands: deque[WriterCommand] = deque()
        self._head_offset = 0  # samples of commands[0] already taken into a batch
        self._queued = 0
        self._closed = False
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None
        # Statistics; written by the writer thread only, read under the lock.
        self._committed_total = 0
        self._inserted_total = 0
        self._batches_total = 0
        self._last_batch_size = 0
        self._last_batch_seconds = 0.0
        self._failures_total = 0
        self._quarantined_total = 0
        self._database_up = True
        self._down_since = 0.0
        self._retries = 0

    # -- producer side ---------------------------------------------------------------------

    def submit(self, samples: Sequence[Sample], timeout: float | None = None) -> bool:
        """Queue ``samples``; block while full. False only if ``timeout`` expired (nothing queued).

        All or nothing: a call larger than the capacity waits for an empty queue.
        """
        count = len(samples)
        if count == 0:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._not_full:
            while True:
                if self._closed:
                    raise RuntimeError("historian writer is stopped")
                if self._queued == 0 or self._queued + count <= self._capacity:
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._not_full.wait(remaining)
            # A private copy: the caller may reuse its list.
            self._commands.append(WriteSamples(tuple(samples)))
            self._queued += count
            self._not_empty.notify()
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every sample submitted before this call is committed (or quarantined)."""
        done = threading.Event()
        with self._lock:
            if self._queued == 0:
                return True
            self._commands.append(Flush(done))
            self._not_empty.notify()
        return done.wait(timeout)

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("historian writer already started")
        self._thread = threading.Thread(target=self._run, name="historian-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Drain the queue, then end the thread. False if it did not finish within ``timeout``
        (e.g. the database stayed down); the unwritten samples are then logged and dropped."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._commands.append(Stop())
                self._not_empty.notify()
                self._not_full.notify_all()
        if self._thread is None:
            return self._queued == 0
        self._thread.join(timeout)
        if not self._thread.is_alive():
            return True
        self._abort.set()
        log.error("historian writer stopped with %d samples not committed", self.stats().queued)
        return False

    def stats(self) -> HistorianWriterStats:
        with self._lock:
            return HistorianWriterStats(
                queued=self._queued,
                committed_total=self._committed_total,
                inserted_total=self._inserted_total,
                batches_total=self._batches_total,
                last_batch_size=self._last_batch_size,
                last_batch_seconds=self._last_batch_seconds,
                failures_total=self._failures_total,
                quarantined_total=self._quarantined_total,
                database_up=self._database_up,
            )

    # -- writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                batch, control = self._take()
                if batch:
                    self._write(batch)
                    with self._lock:
                        self._queued -= len(batch)
                        self._not_full.notify_all()
                if isinstance(control, Flush):
                    control.done.set()
                elif isinstance(control, Stop):
                    return
        except _Aborted:
            return
        except BaseException:
            log.exception("historian writer thread failed")
            raise

    def _take(self) -> tuple[list[Sample], Flush | Stop | None]:
        """The next batch, or a control command once the samples before it are written."""
        with self._not_empty:
            while not self._commands:
                self._not_empty.wait()
            batch: list[Sample] = []
            deadline = time.monotonic() + self._max_batch_delay_s
            while True:
                while self._commands and len(batch) < self._max_batch:
                    head = self._commands[0]
                    if not isinstance(head, WriteSamples):
                        if batch:
                            return batch, None  # write first; the command stays queued
                        self._commands.popleft()
                        return batch, head
                    room = self._max_batch - len(batch)
                    taken = head.samples[self._head_offset : self._head_offset + room]
                    batch.extend(taken)
                    self._head_offset += len(taken)
                    if self._head_offset >= len(head.samples):
                        self._commands.popleft()
                        self._head_offset = 0
                if len(batch) >= self._max_batch or self._commands:
                    return batch, None
                # Not a full batch: wait briefly for more so a trickle of samples does not
                # become one transaction each.
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return batch, None
                self._not_empty.wait(remaining)

    def _write(self, samples: list[Sample]) -> None:
        """Write ``samples`` in order: retry outages, isolate and quarantine poison samples."""
        while True:
            started = time.monotonic()
            try:
                inserted = self._store.write_batch(samples)
            except Exception as error:
                with self._lock:
                    self._failures_total += 1
                if is_transient_error(error):
                    self._wait_for_database(error)
                    continue
                if len(samples) == 1:
                    self._quarantine(samples[0], error)
                    return
                middle = len(samples) // 2
                self._write(samples[:middle])
                self._write(samples[middle:])
                return
            elapsed = time.monotonic() - started
            self._database_is_up()
            with self._lock:
                self._committed_total += len(samples)
                self._inserted_total += inserted
                self._batches_total += 1
                self._last_batch_size = len(samples)
                self._last_batch_seconds = elapsed
            return

    def _quarantine(self, sample: Sample, error: Exception) -> None:
        reason = f"{type(error).__name__}: {error}"[:_REASON_MAX_CHARS]
        ts = sample.ts_ms
        if not (isinstance(ts, int) and INT64_MIN <= ts <= INT64_MAX):
            # The quarantine table cannot hold that timestamp either; keep it in the reason.
            reason = f"timestamp {ts!r}: {reason}"[:_REASON_MAX_CHARS]
            ts = 0
        while True:
            try:
                self._store.quarantine(sample.tag, ts, repr(sample.value), reason)
            except Exception as quarantine_error:
                # Whatever the cause, the sample must not be lost: wait like for an outage.
                with self._lock:
                    self._failures_total += 1
                self._wait_for_database(quarantine_error)
                continue
            self._database_is_up()
            with self._lock:
                self._quarantined_total += 1
            log.warning("historian quarantined %s at %d: %s", sample.tag, ts, reason)
            return

    def _wait_for_database(self, error: Exception) -> None:
        with self._lock:
            first = self._database_up
            if first:
                self._database_up = False
                self._down_since = time.monotonic()
                self._retries = 0
            self._retries += 1
            retries = self._retries
        if first:
            log.error("historian database unavailable, retrying: %s", error)
        delay = min(self._backoff_max, self._backoff_min * 2 ** min(retries - 1, 30))
        if self._abort.wait(delay):
            raise _Aborted

    def _database_is_up(self) -> None:
        if self._database_up:
            return
        with self._lock:
            self._database_up = True
            down_for = time.monotonic() - self._down_since
            retries = self._retries
        log.warning(
            "historian database available again after %.1f s (%d failed attempts)",
            down_for,
            retries,
        )
