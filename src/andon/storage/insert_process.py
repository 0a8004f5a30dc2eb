"""The historian's inserts in a child process: the database's work on the second core.

The server is one Python process, and one interpreter runs Python code on one core at a time (the
GIL). Decoding Sparkplug messages and inserting their values into the database were two threads
of that one core: profiled during a store-and-forward replay, the writer's part (building rows,
binding parameters, the driver) was over a third of the server's time, the decode most of the rest,
while the machine's second core stayed mostly idle. ``InsertProcessStore`` moves ``write_batch``
into a child process with its own interpreter and its own database connection; the parent only
pickles the batch (a fraction of a microsecond per value) and waits for the answer with the GIL
released, so ingest goes on meanwhile.

Nothing else changes: the ``HistorianWriter`` in the parent still owns the queue, the order, the
disk spool, the fencing token and the quarantine; a batch's samples still commit in one
transaction (in the child) or not at all. Every other call (queries, quarantine) goes to the
parent's own store on the same database.

Failure handling leans on the historian's idempotence on (tag, timestamp):

* the child exits or is killed: the batch in flight raises ``ConnectionError`` (transient, so the
  writer retries it with backoff, spooling meanwhile); the next batch starts a new child. If the
  child had committed before dying, the retry inserts nothing new, and loses nothing.
* the parent dies (even kill -9): the child reads the end of its socket, finishes the
  transaction it is in, and exits. It runs in a session of its own, so signals meant for the
  server's process group (Ctrl-C, a service manager's SIGTERM) do not cut a transaction short.
  What the parent held in memory is what the edges re-send.
* errors keep their meaning across the boundary: the child classifies each one (transient,
  fenced out, or the data's fault) and the parent raises an error of the same class, so the
  writer retries, holds, or bisects to quarantine exactly as it would in one process.

The database URL (which may hold a password) goes over the socket, never on a command line, and
environment variables holding it are not passed on.

A batch that kills its child every time (a crash in a driver) is retried every time, as a
server that crashed on it would be restarted: losing a child never counts as the data's fault.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import exc as sa_exc

from andon.cluster.model import FencedOut, FencingToken
from andon.storage.codec import UnstorableValueError
from andon.storage.store import DEFAULT_HISTORY_LIMIT, HistorianStore, open_historian_store
from andon.storage.types import HistoryBucket, QuarantinedSample, Sample, TagInfo
from andon.storage.writer_commands import is_transient_error

__all__ = ["InsertProcessStore", "InsertRejected"]

log = logging.getLogger(__name__)

_FRAME = struct.Struct("!Q")
_PROTOCOL = pickle.HIGHEST_PROTOCOL
#: How long a new child may take to import and open the store before it counts as failed.
_START_TIMEOUT_S = 60.0
#: How long close() lets the child finish its transaction before killing it.
_STOP_TIMEOUT_S = 10.0


class InsertRejected(Exception):
    """The child refused a batch for a reason of the data (not transient): the writer bisects
    the batch and quarantines the sample(s) at fault, as for any such error."""


def _send_payload(channel: socket.socket, payload: bytes) -> None:
    # Two sends rather than concatenating: a batch is megabytes, not worth copying once more.
    channel.sendall(_FRAME.pack(len(payload)))
    channel.sendall(payload)


def _send(channel: socket.socket, message: object) -> None:
    _send_payload(channel, pickle.dumps(message, _PROTOCOL))


def _receive_exactly(channel: socket.socket, size: int) -> bytearray:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        count = channel.recv_into(view[got:])
        if count == 0:
            raise EOFError("the other end closed the connection")
        got += count
    return buffer


def _receive(channel: socket.socket) -> Any:
    (size,) = _FRAME.unpack(_receive_exactly(channel, _FRAME.size))
    return pickle.loads(_receive_exactly(channel, size))


class _Child:
    """One child process and the socket to it. Raises ``ConnectionError`` if it cannot start
    (like a database that cannot be reached: the writer retries, it does not quarantine)."""

    def __init__(self, url: str) -> None:
        try:
            ours, theirs = socket.socketpair()
        except OSError as error:
            raise ConnectionError(f"historian insert process: no socket: {error}") from None
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "andon.storage.insert_process", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                # Its own session: a Ctrl-C or a SIGTERM meant for the server's process group
                # must not end a transaction half way; the child stops when its socket closes.
                start_new_session=True,
                env=_environment_without(url),
            )
        except OSError as error:
            ours.close()
            raise ConnectionError(f"historian insert process did not start: {error}") from None
        finally:
            theirs.close()
        self.channel = ours
        try:
            ours.settimeout(_START_TIMEOUT_S)
            _send(ours, ("open", url))
            reply = _receive(ours)
            ours.settimeout(None)
        except (OSError, EOFError) as error:
            self.kill()
            raise ConnectionError(f"historian insert process did not start: {error}") from None
        if reply[0] != "ready":
            self.kill()
            raise ConnectionError(f"historian insert process did not start: {reply[-1]}")

    def exited(self) -> bool:
        return self.process.poll() is not None

    def kill(self) -> None:
        self.channel.close()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def close(self) -> None:
        """End of input: the child finishes what it is doing and exits (killed after
        ``_STOP_TIMEOUT_S``)."""
        with contextlib.suppress(OSError):
            self.channel.shutdown(socket.SHUT_RDWR)
        try:
            self.process.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.error("historian insert process did not stop in %.0f s: killed", _STOP_TIMEOUT_S)
        self.kill()


def _environment_without(url: str) -> dict[str, str]:
    """The server's environment minus any variable holding the database URL (its password)."""
    return {name: value for name, value in os.environ.items() if url not in value}


def _raise_reply(reply: tuple[Any, ...], fence: FencingToken | None) -> None:
    _, kind, blob, name, message = reply
    original: BaseException | None = None
    if blob is not None:
        try:
            original = pickle.loads(blob)
        except Exception:  # an error class that does not survive pickling: described instead
            original = None
    if kind == "fenced":
        if fence is None:  # cannot happen (no token, no fence check); never the data's fault
            raise ConnectionError(f"{name}: {message}")
        raise FencedOut(fence, message)
    if kind == "transient":
        if original is not None and is_transient_error(original):
            raise original
        raise ConnectionError(f"{name}: {message}")
    if isinstance(original, Exception) and not is_transient_error(original):
        raise original
    raise InsertRejected(f"{name}: {message}")


_CLOSED = "the historian store is closed"


class InsertProcessStore:
    """A ``HistorianStore`` whose ``write_batch`` runs in a child process; every other call goes to
    ``local``, the parent's store on the same database (``url``), which stays its owner's to
    close. The child starts with the first batch. One caller writes at a time (the historian
    writer's thread)."""

    def __init__(self, local: HistorianStore, url: str) -> None:
        self._local = local
        self._url = url
        self._lock = threading.Lock()  # one batch in flight
        self._child: _Child | None = None
        self._closed = False
        #: Children started so far (more than one: a child was lost and replaced).
        self.children_started = 0

    @property
    def restarts_total(self) -> int:
        return max(0, self.children_started - 1)

    @property
    def child_pid(self) -> int | None:
        child = self._child
        return None if child is None else child.process.pid

    def write_batch(self, samples: Sequence[Sample], fence: FencingToken | None = None) -> int:
        if not samples:
            return 0
        try:
            # Plain tuples: a named tuple pickles through its Python __new__, 3-4 x slower.
            payload = pickle.dumps(("write", list(map(tuple, samples)), fence), _PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as error:
            # What cannot be sent cannot be stored: the data's fault (quarantined).
            raise UnstorableValueError(f"not transferable to the insert process: {error}") from None
        with self._lock:
            if self._closed:
                raise ConnectionError(_CLOSED)
            child = self._child
            if child is not None and child.exited():  # died while idle: reap it now
                self._lost(child, "exited while idle")
                child = None
            if child is None:
                child = self._child = _Child(self._url)
                self.children_started += 1
            try:
                _send_payload(child.channel, payload)
                del payload
                reply = _receive(child.channel)
            except (OSError, EOFError) as error:
                self._lost(child, str(error) or type(error).__name__)
                if self._closed:
                    raise ConnectionError(_CLOSED) from None
                raise ConnectionError(f"historian insert process lost: {error}") from None
        if reply[0] == "ok":
            return int(reply[1])
        _raise_reply(reply, fence)
        raise AssertionError("unreachable")  # pragma: no cover

    def _lost(self, child: _Child, why: str) -> None:
        self._child = None
        child.kill()
        if not self._closed:
            log.warning(
                "historian insert process lost (%s, exit code %s): its batch is retried",
                why,
                child.process.returncode,
            )

    # -- everything else: the parent's own store ------------------------------------------------

    def history(
        self, tag: str, start_ms: int, end_ms: int, limit: int = DEFAULT_HISTORY_LIMIT
    ) -> list[Sample]:
        return self._local.history(tag, start_ms, end_ms, limit)

    def aggregate(
        self, tag: str, start_ms: int, end_ms: int, bucket_ms: int
    ) -> list[HistoryBucket]:
        return self._local.aggregate(tag, start_ms, end_ms, bucket_ms)

    def tags(self) -> list[TagInfo]:
        return self._local.tags()

    def count(self, tag: str | None = None) -> int:
        return self._local.count(tag)

    def latest(self, tag: str) -> Sample | None:
        return self._local.latest(tag)

    def quarantine(self, tag: str, ts_ms: int, raw: str, reason: str) -> None:
        self._local.quarantine(tag, ts_ms, raw, reason)

    def quarantined(self) -> list[QuarantinedSample]:
        return self._local.quarantined()

    def close(self) -> None:
        """Stop the child (after the transaction it is in). ``local`` is borrowed: its owner
        closes it."""
        self._closed = True
        child = self._child
        if child is not None:
            child.close()  # a write waiting for it gets ConnectionError and releases the lock
        with self._lock:  # a child started meanwhile (the lock was held) is closed too
            child, self._child = self._child, None
        if child is not None:
            child.close()


# -- the child ---------------------------------------------------------------------------------


def _error_reply(error: Exception) -> tuple[Any, ...]:
    name = type(error).__name__
    if isinstance(error, FencedOut):
        return ("error", "fenced", None, name, error.reason)
    kind = "transient" if is_transient_error(error) else "data"
    if isinstance(error, sa_exc.StatementError):
        error.params = None  # the whole batch: not worth pickling, nor printing
    blob: bytes | None
    try:
        blob = pickle.dumps(error)
        pickle.loads(blob)  # some error classes pickle but cannot be rebuilt
    except Exception:
        blob = None
    return ("error", kind, blob, name, str(error))


def _serve(channel: socket.socket) -> None:
    _, url = _receive(channel)
    try:
        store = open_historian_store(url)
    except Exception as error:
        _send(channel, ("error", f"{type(error).__name__}: {error}"))
        return
    _send(channel, ("ready", os.getpid()))
    try:
        while True:
            try:
                _, rows, fence = _receive(channel)
            except EOFError:
                return  # the server stopped or died
            try:
                # Sample's fields as plain tuples: the SQL stores read samples by position.
                inserted = store.write_batch(cast("list[Sample]", rows), fence)
                reply: tuple[Any, ...] = ("ok", inserted)
            except Exception as error:
                reply = _error_reply(error)
            del rows
            _send(channel, reply)
    finally:
        store.close()


def main(argv: Sequence[str]) -> int:
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s andon.insert_process[%(process)d] %(message)s",
    )
    channel = socket.socket(fileno=int(argv[0]))
    try:
        _serve(channel)
    except (EOFError, ConnectionError):
        return 0  # the parent went away during start-up or a reply
    finally:
        channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
