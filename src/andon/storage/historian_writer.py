"""The single historian writer: one thread, one bounded queue, batched transactions.

Producers (the ingest pipeline) call :meth:`HistorianWriter.submit`; it blocks while the queue
is full, which is the back-pressure that slows ingest down instead of dropping data. The
writer thread takes as many queued samples as fit in one batch and hands them to the store:

* unreachable database (transient errors): retry with exponential backoff, logging only the
  first failure and the recovery. Without a spool the batch waits in memory. With a spool
  (``spool_path``) the unwritten batch and everything queued behind it move to the disk spool
  in order; while the database stays down, the queue keeps moving there at every retry and
  whenever it passes half its capacity, so memory stays bounded and a restart loses nothing.
  When the database answers again the spool is drained first, oldest batch first, each batch
  removed only after its commit; only then does the writer take from memory again (the spool
  is always older than the queue). A spool left by an earlier run is drained on start.
* any other error is a property of the data: the batch is split in halves until the poison
  sample(s) are isolated, the rest is written in order and each poison sample is quarantined
  with the reason. Batches coming out of the spool are treated the same way.

Samples count as queued until their batch is committed or spooled, so ``queue_capacity``
bounds all the samples the writer holds in memory.

Derived records (the MES service's intervals, counts and rollups) travel through the same queue
as ``WriteDerived`` commands and are written by the same thread, after the samples submitted
before them (they do not cut a batch of samples short: gathered, they are written together), so a
database still has exactly one writer. They cannot go to the sample spool: while the database is
down they wait in memory, coalesced (``DerivedWrite.merge``: a row rewritten twice is kept once,
rollup increments are summed), bounded by ``queue_capacity`` rows, beyond which
``submit_derived`` blocks (back-pressure on ingest, nothing dropped). They are what the MES
derives from samples that are also in the history, so a process that dies with some of them
unwritten can derive them again from the history (``MesService.recover``).

A full spool refuses appends; the samples then stay in memory and the bounded queue applies
back-pressure: history is never dropped.

With a ``fence`` (a redundant cluster) the writer writes only while this node leads the domain,
each transaction checking the fencing token; otherwise it holds back exactly as during an outage
(``andon.storage.writer_fence``).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from andon.cluster.model import FencingToken
from andon.storage.codec import INT64_MAX, INT64_MIN
from andon.storage.store import HistorianStore
from andon.storage.types import Sample
from andon.storage.write_spool import HistorianSpool, HistorianSpoolError
from andon.storage.writer_commands import (
    DerivedWrite,
    Flush,
    HistorianWriterStats,
    Stop,
    WriteDerived,
    WriterCommand,
    WriteSamples,
    is_transient_error,
)
from andon.storage.writer_fence import NotLeader, WriterFence

__all__ = [
    "DerivedWrite",
    "Flush",
    "HistorianWriter",
    "HistorianWriterStats",
    "Stop",
    "WriteDerived",
    "WriteSamples",
    "WriterCommand",
    "is_transient_error",
]

log = logging.getLogger(__name__)

_REASON_MAX_CHARS = 2_000
#: Spool batches written per peek while draining (each is up to ``max_batch`` samples).
_DRAIN_BATCHES = 8
#: While the database is down, the queue moves to the spool as soon as it is this full.
_SPOOL_HIGH_WATER = 0.5


class _Aborted(Exception):
    """stop() gave up waiting; the thread ends with the samples in memory unwritten."""


class HistorianWriter:
    """One per historian database (and per spool file: two writers must not share a spool)."""

    def __init__(
        self,
        store: HistorianStore,
        *,
        queue_capacity: int = 200_000,
        max_batch: int = 100_000,
        max_batch_delay_s: float = 0.05,
        derived_max_delay_s: float = 0.0,
        retry_backoff_s: tuple[float, float] = (0.2, 5.0),
        spool_path: Path | None = None,
        spool_max_bytes: int = 1024 * 1024 * 1024,
        fence: Callable[[], FencingToken | None] | None = None,
    ) -> None:
        if queue_capacity < 1 or max_batch < 1:
            raise ValueError("queue_capacity and max_batch must be positive")
        if fence is not None and spool_path is None:
            raise ValueError("a fenced historian writer needs a spool_path to hold samples in")
        self._fence = None if fence is None else WriterFence(fence)
        self._store = store
        self._capacity = queue_capacity
        self._high_water = max(1, int(queue_capacity * _SPOOL_HIGH_WATER))
        self._max_batch = max_batch
        self._max_batch_delay_s = max_batch_delay_s
        # Derived (MES) changes gather this long before they are written: rollup increments to
        # the same bucket merge, so a busy plant costs one transaction per period, not one per
        # batch of samples. A flush or stop writes them at once.
        self._derived_delay_s = derived_max_delay_s
        self._backoff_min, self._backoff_max = retry_backoff_s
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._commands: deque[WriterCommand] = deque()
        self._head_offset = 0  # samples of commands[0] already taken into a batch
        self._queued = 0
        # The writer is waiting out max_batch_delay_s for a fuller batch: samples need not
        # wake it until they fill a batch (at 1,000 messages/s a wake-up per message had cost
        # the writer thread more than the batches it wrote).
        self._gathering = False
        self._producers_waiting = 0  # submits waiting for room: a gathering writer stops
        self._closed = False
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None
        # Spool state; the spool is used by the writer thread only (stats() reads the counts).
        self._spool = None if spool_path is None else HistorianSpool(spool_path, spool_max_bytes)
        self._spool_counts = (0, 0, 0) if self._spool is None else self._spool.counts()
        self._spool_refusing = False  # the last append was refused (full or failing)
        # Id of the newest spooled batch. Batches of an earlier run: unknown here, so a Flush
        # spooled before this run's first append waits for the whole spool to drain.
        self._last_spooled_id = sys.maxsize if self._spool_counts[0] else 0
        self._pending_flushes: list[tuple[int, threading.Event]] = []  # (last spool id, done)
        self._retry_at = 0.0  # monotonic time of the next database attempt while it is down
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
        # Derived writes (writer thread), their queued row count (under the lock) and the
        # flushes that wait for them.
        self._derived: DerivedWrite | None = None
        self._derived_rows = 0
        self._derived_dropped = 0
        self._derived_flushes: list[threading.Event] = []
        self._derived_since = 0.0  # monotonic time the pending derived write began gathering

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
                self._wait_for_room(remaining)
            # A private copy: the caller may reuse its list.
            self._commands.append(WriteSamples(tuple(samples)))
            self._queued += count
            if not self._gathering or self._queued >= self._max_batch:
                self._not_empty.notify()
        return True

    def submit_derived(self, write: DerivedWrite, timeout: float | None = None) -> bool:
        """Queue derived records behind the samples submitted so far; blocks while
        ``queue_capacity`` derived rows are waiting. False only if ``timeout`` expired."""
        rows = write.rows
        if rows == 0:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._not_full:
            while True:
                if self._closed:
                    raise RuntimeError("historian writer is stopped")
                if self._derived_rows == 0 or self._derived_rows + rows <= self._capacity:
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._wait_for_room(remaining)
            self._commands.append(WriteDerived(write))
            self._derived_rows += rows
            if not self._gathering:  # derived writes do not end a batch being gathered
                self._not_empty.notify()
        return True

    def _wait_for_room(self, timeout: float | None) -> None:
        """Wait (holding the lock, as a Condition does) until the writer frees room. A writer
        gathering a fuller batch writes what it has at once instead: a producer waits."""
        self._producers_waiting += 1
        try:
            if self._gathering:
                self._not_empty.notify()
            self._not_full.wait(timeout)
        finally:
            self._producers_waiting -= 1

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every sample submitted before this call is committed (or quarantined),
        including the samples waiting in the spool."""
        done = threading.Event()
        with self._lock:
            if self._queued == 0 and self._spool_counts[0] == 0 and self._derived_rows == 0:
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
        """Write what is queued, then end the thread.

        With a spool, what the database cannot take now (it is down, or older batches still
        wait in the spool) goes to the spool instead and the next writer on the same spool path
        writes it. False if the thread did not finish within ``timeout`` (the database stayed
        down and there is no spool, or the spool is full); the samples still in memory are
        then logged and dropped.
        """
        with self._lock:
            if not self._closed:
                self._closed = True
                self._commands.append(Stop())
                self._not_empty.notify_all()
                self._not_full.notify_all()
        if self._thread is None:
            self._close_spool()
            return self._queued == 0
        self._thread.join(timeout)
        if not self._thread.is_alive():
            return True
        self._abort.set()
        with self._lock:
            self._not_empty.notify_all()
        log.error("historian writer stopped with %d samples not committed", self.stats().queued)
        return False

    def trim_spool(self, created_before_ms: int) -> int:
        """Drop the spooled batches appended before ``created_before_ms`` (wall clock, ms);
        returns the samples dropped. Only for a fenced writer whose samples the leader of the
        domain has committed (a passive node trimming against the leader's watermark): every
        dropped batch is already in the database, so dropping it is safe even while a
        promotion starts draining the spool (a batch acknowledged twice is ignored)."""
        if self._spool is None or self._fence is None:
            raise RuntimeError("only a fenced writer with a spool trims it")
        _batches, samples = self._spool.drop_created_before(created_before_ms)
        self._update_spool_counts()
        return samples

    def stats(self) -> HistorianWriterStats:
        with self._lock:
            spool_batches, spool_samples, spool_bytes = self._spool_counts
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
                spool_batches=spool_batches,
                spool_samples=spool_samples,
                spool_bytes=spool_bytes,
                spooling=spool_batches > 0,
                derived_queued=self._derived_rows,
                derived_dropped_total=self._derived_dropped,
                fenced=self._fence is not None and self._fence.holding,
                fenced_out_total=0 if self._fence is None else self._fence.fenced_out_total,
                derived_discarded_total=(
                    0 if self._fence is None else self._fence.derived_discarded_total
                ),
            )

    # -- writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        try:
            if self._spool_counts[0]:
                log.warning(
                    "historian spool holds %d samples from an earlier run; writing them first",
                    self._spool_counts[1],
                )
            while True:
                # The spool first: derived records go after the samples submitted before them,
                # also those an outage moved to the spool.
                if self._spool is not None and len(self._spool):
                    if self._drain_spool(self._spool):
                        return
                    continue
                if self._derived is not None and self._derived_due() and not self._try_derived():
                    # The database is down: samples keep moving to the spool meanwhile.
                    if self._spool is not None and self._spool_queue(everything=True):
                        self._write_derived()  # Stop was queued: one last attempt
                        return
                    self._wait_retry()
                    continue
                batch, derived, control = self._take()
                if batch:
                    self._write_from_memory(batch)
                if derived:
                    self._merge_derived(derived)
                if isinstance(control, Flush):
                    if self._derived is None:
                        control.done.set()
                    else:
                        self._derived_flushes.append(control.done)
                elif isinstance(control, Stop):
                    if self._derived is not None:
                        self._write_derived()
                    return
        except _Aborted:
            return
        except BaseException:
            log.exception("historian writer thread failed")
            raise
        finally:
            self._close_spool()

    def _take(self) -> tuple[list[Sample], list[DerivedWrite], Flush | Stop | None]:
        """The next batch of samples, the derived writes queued among them (to merge once the
        batch is written), or a control command once everything before it is written.

        Derived writes do not end a batch: the MES submits one per message it derives from, and
        ending the batch there made a busy plant write a transaction per message (a wide plant
        then writes a page per sample). Merged after the batch, they are still written after
        every sample submitted before them."""
        derived: list[DerivedWrite] = []
        with self._not_empty:
            while not self._commands:
                if self._derived is None:
                    self._not_empty.wait()
                    continue
                remaining = self._derived_since + self._derived_delay_s - time.monotonic()
                if remaining <= 0:
                    return [], derived, None  # the gathered derived changes are due
                self._not_empty.wait(remaining)
            batch: list[Sample] = []
            deadline = time.monotonic() + self._max_batch_delay_s
            while True:
                while self._commands and len(batch) < self._max_batch:
                    head = self._commands[0]
                    if isinstance(head, WriteDerived):
                        self._commands.popleft()
                        derived.append(head.write)
                        continue
                    if not isinstance(head, WriteSamples):
                        if batch or derived:
                            return batch, derived, None  # write first; the command stays
                        self._commands.popleft()
                        return batch, derived, head
                    room = self._max_batch - len(batch)
                    taken = head.samples[self._head_offset : self._head_offset + room]
                    batch.extend(taken)
                    self._head_offset += len(taken)
                    if self._head_offset >= len(head.samples):
                        self._commands.popleft()
                        self._head_offset = 0
                if len(batch) >= self._max_batch or self._commands or not batch:
                    return batch, derived, None
                if self._producers_waiting:
                    return batch, derived, None  # a submit waits for room: write, not gather
                # Not a full batch: wait briefly for more so a trickle of samples does not
                # become one transaction each.
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return batch, derived, None
                self._gathering = True
                try:
                    self._not_empty.wait(remaining)
                finally:
                    self._gathering = False

    def _write_from_memory(self, batch: list[Sample]) -> None:
        rest = batch
        while True:
            rest, error = self._write_segments(rest)
            if error is None:
                break
            self._database_down(error)
            # On disk, the unwritten rest is the oldest batch of the spool, and the main loop
            # drains the spool before it takes anything else: the order holds.
            if self._spool is not None and self._spool_append([rest]) is not None:
                break
            self._wait_retry()
        with self._lock:
            self._queued -= len(batch)
            self._not_full.notify_all()

    def _write_segments(self, samples: Sequence[Sample]) -> tuple[list[Sample], Exception | None]:
        """Write ``samples`` in order, quarantining poison samples (found by bisection).

        Returns ``([], None)`` when all are committed or quarantined, else the unwritten tail
        and the (transient) error that stopped it.
        """
        pending: deque[Sequence[Sample]] = deque([samples])
        while pending:
            segment = pending.popleft()
            started = time.monotonic()
            try:
                if self._fence is None:
                    inserted = self._store.write_batch(segment)
                else:
                    inserted = self._store.write_batch(segment, fence=self._fence.token())
            except Exception as error:
                with self._lock:
                    self._failures_total += not isinstance(error, NotLeader)
                if is_transient_error(error) or WriterFence.stops(error):
                    pending.appendleft(segment)
                    return [s for part in pending for s in part], error
                if len(segment) > 1:
                    middle = len(segment) // 2
                    pending.extendleft((segment[middle:], segment[:middle]))
                    continue
                quarantine_error = self._quarantine(segment[0], error)
                if quarantine_error is not None:
                    pending.appendleft(segment)
                    return [s for part in pending for s in part], quarantine_error
                continue
            elapsed = time.monotonic() - started
            self._database_is_up()
            if self._fence is not None:
                self._fence.resume()
            with self._lock:
                self._committed_total += len(segment)
                self._inserted_total += inserted
                self._batches_total += 1
                self._last_batch_size = len(segment)
                self._last_batch_seconds = elapsed
        return [], None

    def _quarantine(self, sample: Sample, error: Exception) -> Exception | None:
        """Quarantine a poison sample; the error if that failed (the sample must not be lost)."""
        reason = f"{type(error).__name__}: {error}"[:_REASON_MAX_CHARS]
        ts = sample.ts_ms
        if not (isinstance(ts, int) and INT64_MIN <= ts <= INT64_MAX):
            # The quarantine table cannot hold that timestamp either; keep it in the reason.
            reason = f"timestamp {ts!r}: {reason}"[:_REASON_MAX_CHARS]
            ts = 0
        try:
            self._store.quarantine(sample.tag, ts, repr(sample.value), reason)
        except Exception as quarantine_error:
            # Whatever the cause, treat it like an outage: the sample is kept and retried.
            with self._lock:
                self._failures_total += 1
            return quarantine_error
        self._database_is_up()
        with self._lock:
            self._quarantined_total += 1
        log.warning("historian quarantined %s at %d: %s", sample.tag, ts, reason)
        return None

    # -- the spool (writer thread) ---------------------------------------------------------

    def _drain_spool(self, spool: HistorianSpool) -> bool:
        """Write the spool oldest first until it is empty; True once a Stop command was met.

        Meanwhile new samples wait in memory behind the spool and move to it while the
        database is down, when the queue passes the high-water mark, or when stop() is called.
        """
        while True:
            if self._spool_queue(everything=self._closed or self._held()):
                return True
            if not len(spool):
                self._release_flushes(None)
                return False
            if self._held() and time.monotonic() < self._retry_at:
                self._wait_retry()
                continue
            try:
                error = self._write_spool_head(spool)
            except HistorianSpoolError as spool_error:
                # The spool's disk failed; its batches are still there. Retry it slowly.
                log.error("historian spool failed, retrying: %s", spool_error)
                self._retry_at = time.monotonic() + self._backoff_max
                self._wait_retry()
                continue
            if error is not None:
                self._database_down(error)

    def _write_spool_head(self, spool: HistorianSpool) -> Exception | None:
        if self._fence is not None and not self._fence.may_write():
            return NotLeader("not the leader")  # asked first: a passive node reads no spool
        done: list[int] = []
        error: Exception | None = None
        for batch_id, samples in spool.peek(_DRAIN_BATCHES):
            rest, error = self._write_segments(samples)
            if error is None:
                done.append(batch_id)
                continue
            if len(rest) < len(samples):
                # Keep what is committed or quarantined out of the retry (no double quarantine).
                spool.replace(batch_id, rest)
            break
        if done:
            spool.ack(done)  # only now: their transactions have committed
            self._spool_refusing = False
            self._release_flushes(done[-1])
        self._update_spool_counts()
        return error

    def _spool_queue(self, *, everything: bool) -> bool:
        """Move queued samples to the spool in order: all, or none below the high-water mark.

        Returns True if the Stop command was among them. Nothing leaves memory unless the
        spool has accepted it.
        """
        chunks: list[list[Sample]] = []
        controls: list[tuple[int, Flush | Stop]] = []  # (chunks before it, command)
        derived: list[DerivedWrite] = []  # stay in memory, merged once the rest is spooled
        with self._lock:
            if not self._commands or (not everything and self._queued < self._high_water):
                return False
            current: list[Sample] = []
            taken = 0
            offset = self._head_offset
            for command in self._commands:
                taken += 1
                if isinstance(command, WriteSamples):
                    samples, position, offset = command.samples, offset, 0
                    while position < len(samples):
                        room = self._max_batch - len(current)
                        current.extend(samples[position : position + room])
                        position += room
                        if len(current) >= self._max_batch:
                            chunks.append(current)
                            current = []
                    continue
                if isinstance(command, WriteDerived):
                    derived.append(command.write)
                    continue
                if current:
                    chunks.append(current)
                    current = []
                controls.append((len(chunks), command))
                if isinstance(command, Stop):
                    break
            if current:
                chunks.append(current)
        # Producers only append to the deque, so the prefix read above is still there.
        previous_id = self._last_spooled_id  # a Flush before the first chunk waits for this
        ids = self._spool_append(chunks) if chunks else []
        if ids is None:
            return False
        with self._lock:
            for _ in range(taken):
                self._commands.popleft()
            self._head_offset = 0
            self._queued -= sum(len(chunk) for chunk in chunks)
            self._not_full.notify_all()
        self._merge_derived(derived)
        for chunks_before, control in controls:
            if isinstance(control, Stop):
                return True
            last_id = ids[chunks_before - 1] if chunks_before else previous_id
            self._pending_flushes.append((last_id, control.done))
        return False

    def _spool_append(self, batches: Sequence[Sequence[Sample]]) -> list[int] | None:
        """Append in one transaction; None (logged once per episode) if the spool refused."""
        assert self._spool is not None
        try:
            ids = self._spool.append_many(batches)
        except Exception as error:  # full, disk error or an unencodable sample: keep in memory
            if not self._spool_refusing:
                log.error(
                    "historian spool refused %d samples; keeping them in memory (back-pressure"
                    " on ingest when the queue is full): %s",
                    sum(len(batch) for batch in batches),
                    error,
                )
            self._spool_refusing = True
            return None
        if self._spool_refusing:
            log.warning("historian spool accepts samples again")
        self._spool_refusing = False
        self._last_spooled_id = ids[-1]
        self._update_spool_counts()
        return ids

    def _release_flushes(self, acked_through: int | None) -> None:
        """Set the flushes whose samples are committed (all of them when the spool is empty)."""
        keep = []
        for last_id, done in self._pending_flushes:
            if acked_through is None or last_id <= acked_through:
                done.set()
            else:
                keep.append((last_id, done))
        self._pending_flushes = keep

    def _update_spool_counts(self) -> None:
        if self._spool is not None:
            counts = self._spool.counts()
            with self._lock:
                self._spool_counts = counts

    def _close_spool(self) -> None:
        if self._spool is not None:
            self._update_spool_counts()
            self._spool.close()

    # -- derived writes (writer thread) --------------------------------------------------------

    def _derived_due(self) -> bool:
        pending = self._derived
        return (
            pending is None
            or bool(self._derived_flushes)
            or self._closed
            or pending.rows >= self._max_batch
            or time.monotonic() - self._derived_since >= self._derived_delay_s
        )

    def _merge_derived(self, writes: Sequence[DerivedWrite]) -> None:
        for write in writes:
            if self._derived is None:
                self._derived = write
                self._derived_since = time.monotonic()
                continue
            before = self._derived.rows + write.rows
            self._derived.merge(write)
            with self._lock:
                self._derived_rows -= before - self._derived.rows
                self._not_full.notify_all()

    def _try_derived(self) -> bool:
        """Write the pending derived records unless a retry is not due yet; True if written."""
        if self._held() and time.monotonic() < self._retry_at:
            return False
        return self._write_derived()

    def _write_derived(self) -> bool:
        pending = self._derived
        if pending is None:
            return True
        rows = pending.rows
        try:
            if self._fence is None:
                pending.write()
            else:
                pending.write(fence=self._fence.token())
        except Exception as error:
            with self._lock:
                self._failures_total += not isinstance(error, NotLeader)
            if self._fence is not None and WriterFence.stops(error):
                self._fence.discard_derived(error, rows)
            elif is_transient_error(error):
                # A write made of several transactions (MES edits) may have committed a part:
                # those rows leave the count; the rest is retried.
                with self._lock:
                    self._derived_rows -= rows - pending.rows
                    self._not_full.notify_all()
                self._database_down(error)
                return False
            else:
                # Not the database's state but the records: a bug in the deriving service. They
                # are re-derivable from the history, so the writer goes on (ingest not blocked).
                log.exception("derived records refused by the database; %d rows dropped", rows)
                with self._lock:
                    self._derived_dropped += rows
        else:
            self._database_is_up()
            if self._fence is not None:
                self._fence.resume()
        self._derived = None
        with self._lock:
            self._derived_rows -= rows
            self._not_full.notify_all()
        for done in self._derived_flushes:
            done.set()
        self._derived_flushes.clear()
        return True

    # -- database state --------------------------------------------------------------------

    def _held(self) -> bool:
        """Writes wait: the database is down, or this node is not the leader."""
        return not self._database_up or (self._fence is not None and self._fence.holding)

    def _database_down(self, error: Exception) -> None:
        """Count the failure, log the first one, and schedule the next attempt (backoff)."""
        if self._fence is not None and WriterFence.stops(error):
            # Not an outage: ask the fence again soon (a promotion should not wait a backoff).
            self._fence.hold(error)
            self._retry_at = time.monotonic() + self._fence.poll_s
            return
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
        self._retry_at = time.monotonic() + delay

    def _wait_retry(self) -> None:
        """Sleep until the next attempt; earlier if the queue should move to the spool."""
        with self._lock:
            while True:
                if self._abort.is_set():
                    raise _Aborted
                if (
                    self._spool is not None
                    and not self._spool_refusing
                    and (self._closed or self._queued >= self._high_water)
                ):
                    return
                remaining = self._retry_at - time.monotonic()
                if remaining <= 0:
                    return
                self._not_empty.wait(remaining)

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
