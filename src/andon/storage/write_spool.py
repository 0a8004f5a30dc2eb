"""The historian writer's disk spool: sample batches waiting for the database (checklist S-08).

While the historian database is unreachable the writer moves its queued batches here, in order,
so the server's memory stays bounded and a restart during the outage loses nothing. When the
database returns the writer drains the spool oldest first and removes a batch (``ack``) only
after the transaction that stored it has committed. A crash between commit and ack writes the
batch again, which the store ignores (idempotent on tag and timestamp).

Durability: SQLite in WAL mode with ``synchronous=FULL``. The spool holds data no one else has
(the edges already dropped it after the server took it), so every commit syncs the WAL; NORMAL
would survive a process kill but may lose the last commits on power loss.

Never drops: when ``max_bytes`` (or the disk) is full, ``append`` raises
:class:`HistorianSpoolFullError` and the writer keeps the samples in memory, whose bounded queue
then slows ingest down. ``bytes`` counts payload bytes plus a fixed allowance per batch, which
is deterministic and cheap, unlike the file size, which keeps freed pages for reuse.

Payload (first byte = format version). Version 1 is zlib-deflated UTF-8 JSON, column-wise:
``[tags, tag_index, ts_ms, values, quality, is_historical, datatype]`` with each distinct tag
once. JSON keeps bool apart from int, ints of any size, NaN/+-inf and -0.0 exactly; bytes are
``{"b": base64}``. A value of any other type (which the store will reject) is kept as
``{"r": repr}`` and comes back as :class:`UnspooledValue` with the same ``repr``, so it is
quarantined with exactly the text it would have had without the detour through the spool.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from andon.storage.types import Sample, SampleValue

__all__ = [
    "BATCH_OVERHEAD_BYTES",
    "HistorianSpool",
    "HistorianSpoolError",
    "HistorianSpoolFullError",
    "HistorianSpoolStats",
    "UnspooledValue",
    "decode_samples",
    "encode_samples",
]

log = logging.getLogger(__name__)

BATCH_OVERHEAD_BYTES = 64
_FORMAT_ZJSON_V1 = 1
_SCHEMA_VERSION = 1
_ACK_CHUNK = 500  # ids per DELETE ... IN (...), well under SQLite's bound-parameter limit
_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: ids never reused, even when empty
    created_ms INTEGER NOT NULL,
    count INTEGER NOT NULL,
    payload BLOB NOT NULL
);
-- Batches whose payload could not be decoded: set aside for inspection, never deleted.
CREATE TABLE IF NOT EXISTS unreadable (
    id INTEGER PRIMARY KEY, created_ms INTEGER NOT NULL, count INTEGER NOT NULL,
    payload BLOB NOT NULL, reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
"""
_ADD_META = (
    "INSERT INTO meta (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = value + excluded.value"
)
_JSON_NATIVE = (bool, int, float, str, type(None))


class HistorianSpoolError(Exception):
    """The spool could not do what was asked; nothing was partly written."""


class HistorianSpoolFullError(HistorianSpoolError):
    """``max_bytes`` or the disk is full; the append was refused and nothing was written."""


class UnspooledValue:
    """Stands in for a value of a type the spool cannot encode; ``repr`` gives the original's."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UnspooledValue) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


@dataclass(frozen=True, slots=True)
class HistorianSpoolStats:
    batches: int
    samples: int
    bytes: int  # payload bytes + BATCH_OVERHEAD_BYTES per batch
    oldest_created_ms: int | None  # when the oldest batch held was spooled
    # Persisted across restarts:
    appended_batches_total: int
    appended_samples_total: int
    acked_batches_total: int
    acked_samples_total: int
    unreadable_batches_total: int


def encode_samples(samples: Sequence[Sample]) -> bytes:
    """Version-1 payload of one batch."""
    if not samples:
        raise ValueError("a spooled batch needs at least one sample")
    tag_index: dict[str, int] = {}
    columns: list[list[Any]] = [[], [], [], [], [], []]
    idx, ts, values, quality, historical, datatype = columns
    for sample in samples:
        idx.append(tag_index.setdefault(sample.tag, len(tag_index)))
        ts.append(sample.ts_ms)
        value = sample.value
        if isinstance(value, _JSON_NATIVE):
            values.append(value)
        elif isinstance(value, bytes):
            values.append({"b": base64.b64encode(value).decode("ascii")})
        elif isinstance(value, UnspooledValue):
            values.append({"r": value.text})
        else:
            values.append({"r": repr(value)})
        quality.append(sample.quality)
        historical.append(1 if sample.is_historical else 0)
        datatype.append(sample.datatype)
    body = json.dumps([list(tag_index), *columns], separators=(",", ":"), ensure_ascii=False)
    # surrogatepass: a str with a lone surrogate is a valid Python value; keep it as it is.
    return bytes((_FORMAT_ZJSON_V1,)) + zlib.compress(body.encode("utf-8", "surrogatepass"), 1)


def decode_samples(payload: bytes) -> tuple[Sample, ...]:
    if not payload or payload[0] != _FORMAT_ZJSON_V1:
        raise HistorianSpoolError(f"unknown spool payload format {payload[:1]!r}")
    body = zlib.decompress(payload[1:]).decode("utf-8", "surrogatepass")
    tags, idx, ts, values, quality, historical, datatype = json.loads(body)
    return tuple(
        Sample(tags[i], t, _decode_value(v), q, bool(h), d)
        for i, t, v, q, h, d in zip(idx, ts, values, quality, historical, datatype, strict=True)
    )


def _decode_value(raw: object) -> SampleValue:
    if isinstance(raw, dict):
        if "b" in raw:
            return base64.b64decode(raw["b"])
        return cast(SampleValue, UnspooledValue(str(raw["r"])))  # rejected by the store later
    return cast(SampleValue, raw)


class HistorianSpool:
    """Ordered, size-bounded, crash-safe queue of sample batches. Thread-safe."""

    def __init__(self, path: Path, max_bytes: int = 1024 * 1024 * 1024) -> None:
        if max_bytes <= BATCH_OVERHEAD_BYTES:
            raise ValueError("max_bytes must hold at least one batch")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._batches = self._samples = self._bytes = 0
        self._oldest_created_ms: int | None = None
        self._conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._conn = conn
            conn.execute("PRAGMA busy_timeout = 5000")
            mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
            conn.execute("PRAGMA synchronous = FULL")  # see the module docstring
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if mode == "wal" and version <= _SCHEMA_VERSION:
                conn.executescript(_SCHEMA)
                conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
                with self._lock:
                    self._recount()
        except sqlite3.Error as exc:
            self.close()
            raise self._error("open", exc) from exc
        if mode != "wal" or version > _SCHEMA_VERSION:
            self.close()
            raise HistorianSpoolError(
                f"historian spool {self.path}: needs WAL mode (got {mode}) and schema"
                f" <= {_SCHEMA_VERSION} (file has {version})"
            )

    # -- writing -------------------------------------------------------------------------------

    def append(self, samples: Sequence[Sample]) -> int:
        """Store one batch; it is on disk when this returns. Returns its id."""
        return self.append_many([samples])[0]

    def append_many(self, batches: Sequence[Sequence[Sample]]) -> list[int]:
        """Store several batches in one transaction (one fsync); ids in the order given.

        Raises :class:`HistorianSpoolFullError` (nothing written) if they do not all fit.
        """
        now = time.time_ns() // 1_000_000
        rows = [(now, len(batch), encode_samples(batch)) for batch in batches]
        if not rows:
            return []
        incoming = sum(len(row[2]) + BATCH_OVERHEAD_BYTES for row in rows)
        with self._lock:  # held past the commit, so the in-memory totals never lag the file
            if self._bytes + incoming > self.max_bytes:
                raise HistorianSpoolFullError(
                    f"historian spool {self.path} is full: {self._bytes} of {self.max_bytes}"
                    f" bytes used by {self._batches} batches, {incoming} more refused"
                )
            with self._transaction("append") as conn:
                ids = [
                    int(conn.execute(
                        "INSERT INTO batches (created_ms, count, payload) VALUES (?, ?, ?)"
                        " RETURNING id", row).fetchone()[0])
                    for row in rows
                ]  # fmt: skip
                added = sum(row[1] for row in rows)
                conn.executemany(
                    _ADD_META,
                    [("appended_batches_total", len(rows)), ("appended_samples_total", added)],
                )
            self._batches += len(rows)
            self._samples += added
            self._bytes += incoming
            if self._oldest_created_ms is None:
                self._oldest_created_ms = now
        return ids

    def replace(self, batch_id: int, samples: Sequence[Sample]) -> None:
        """Keep only ``samples`` of a batch (the rest is committed), at the same place in order."""
        payload = encode_samples(samples)
        with self._lock:
            with self._transaction("replace") as conn:
                row = conn.execute(
                    "SELECT count, length(payload) FROM batches WHERE id = ?", (batch_id,)
                ).fetchone()
                if row is None:
                    raise HistorianSpoolError(f"historian spool has no batch {batch_id}")
                conn.execute(
                    "UPDATE batches SET count = ?, payload = ? WHERE id = ?",
                    (len(samples), payload, batch_id),
                )
                conn.execute(_ADD_META, ("acked_samples_total", row[0] - len(samples)))
            self._samples += len(samples) - int(row[0])
            self._bytes += len(payload) - int(row[1])

    def ack(self, ids: Iterable[int]) -> int:
        """Delete these batches (committed to the database). Unknown ids are ignored."""
        wanted = list(ids)
        removed = [0, 0, 0]
        with self._lock:
            with self._transaction("ack") as conn:
                for start in range(0, len(wanted), _ACK_CHUNK):
                    chunk = wanted[start : start + _ACK_CHUNK]
                    marks = ",".join("?" * len(chunk))
                    for count, size in conn.execute(
                        f"DELETE FROM batches WHERE id IN ({marks})"
                        " RETURNING count, length(payload)",
                        chunk,
                    ).fetchall():
                        removed[0] += 1
                        removed[1] += int(count)
                        removed[2] += int(size) + BATCH_OVERHEAD_BYTES
                if removed[0]:
                    conn.executemany(
                        _ADD_META,
                        [("acked_batches_total", removed[0]), ("acked_samples_total", removed[1])],
                    )
            self._batches -= removed[0]
            self._samples -= removed[1]
            self._bytes -= removed[2]
            self._read_oldest()
        return removed[0]

    def drop_created_before(self, created_before_ms: int) -> tuple[int, int]:
        """Delete the batches appended before ``created_before_ms`` (wall clock, ms): a passive
        cluster node's samples that the leader has committed (``andon.server.cluster_upkeep``).
        Returns ``(batches, samples)`` removed; counted as acknowledged."""
        with self._lock:
            with self._transaction("drop") as conn:
                removed = conn.execute(
                    "DELETE FROM batches WHERE created_ms < ? RETURNING count, length(payload)",
                    (created_before_ms,),
                ).fetchall()
                batches = len(removed)
                samples = sum(int(count) for count, _ in removed)
                size = sum(int(length) + BATCH_OVERHEAD_BYTES for _, length in removed)
                if batches:
                    conn.executemany(
                        _ADD_META,
                        [("acked_batches_total", batches), ("acked_samples_total", samples)],
                    )
            self._batches -= batches
            self._samples -= samples
            self._bytes -= size
            self._read_oldest()
        return batches, samples

    # -- reading -------------------------------------------------------------------------------

    def peek(self, max_batches: int) -> list[tuple[int, tuple[Sample, ...]]]:
        """Up to ``max_batches`` batches, oldest first, as ``(id, samples)``.

        A batch that cannot be decoded (a corrupted or foreign payload) would block the spool
        forever; it is moved to the ``unreadable`` table, logged, and skipped.
        """
        with self._lock:
            rows = self._execute(
                "peek", "SELECT id, payload FROM batches ORDER BY id LIMIT ?", (max_batches,)
            )
            result: list[tuple[int, tuple[Sample, ...]]] = []
            for batch_id, payload in rows:
                try:
                    result.append((int(batch_id), decode_samples(bytes(payload))))
                except Exception as exc:  # any decoding failure means the same: unreadable
                    self._set_aside(int(batch_id), f"{type(exc).__name__}: {exc}")
            return result

    def stats(self) -> HistorianSpoolStats:
        with self._lock:
            meta = dict(self._execute("stats", "SELECT key, value FROM meta", ()))
            return HistorianSpoolStats(
                batches=self._batches,
                samples=self._samples,
                bytes=self._bytes,
                oldest_created_ms=self._oldest_created_ms,
                appended_batches_total=int(meta.get("appended_batches_total", 0)),
                appended_samples_total=int(meta.get("appended_samples_total", 0)),
                acked_batches_total=int(meta.get("acked_batches_total", 0)),
                acked_samples_total=int(meta.get("acked_samples_total", 0)),
                unreadable_batches_total=int(meta.get("unreadable_batches_total", 0)),
            )

    def counts(self) -> tuple[int, int, int]:
        """``(batches, samples, bytes)`` held, from memory (no IO: cheap for metrics)."""
        with self._lock:
            return self._batches, self._samples, self._bytes

    def __len__(self) -> int:
        """Batches held (no IO)."""
        with self._lock:
            return self._batches

    def close(self) -> None:
        with self._lock:
            if self._conn is None:
                return
            try:  # fold the WAL back so the file alone is the spool; harmless if it fails
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                log.debug("historian spool %s: checkpoint on close failed", self.path)
            self._conn.close()
            self._conn = None

    def __enter__(self) -> HistorianSpool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals (called with the lock held) -------------------------------------------------

    def _open_conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise HistorianSpoolError(f"historian spool {self.path} is closed")
        return self._conn

    @contextlib.contextmanager
    def _transaction(self, action: str) -> Iterator[sqlite3.Connection]:
        """One write transaction; on any failure it is rolled back and nothing changed."""
        conn = self._open_conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._error(action, exc) from exc
            raise

    def _execute(self, action: str, sql: str, params: Sequence[object]) -> list[Any]:
        try:
            return self._open_conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._error(action, exc) from exc

    def _error(self, action: str, exc: sqlite3.Error) -> HistorianSpoolError:
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            return HistorianSpoolFullError(
                f"historian spool {self.path}: disk full during {action}"
                f" ({self._batches} batches held); nothing was written"
            )
        return HistorianSpoolError(f"historian spool {self.path}: {action} failed: {exc}")

    def _recount(self) -> None:
        row = self._execute(
            "open",
            "SELECT count(*), coalesce(sum(count), 0), coalesce(sum(length(payload)), 0)"
            " FROM batches",
            (),
        )[0]
        self._batches, self._samples = int(row[0]), int(row[1])
        self._bytes = int(row[2]) + self._batches * BATCH_OVERHEAD_BYTES
        self._read_oldest()

    def _read_oldest(self) -> None:
        rows = self._execute("read", "SELECT created_ms FROM batches ORDER BY id LIMIT 1", ())
        self._oldest_created_ms = int(rows[0][0]) if rows else None

    def _set_aside(self, batch_id: int, reason: str) -> None:
        with self._transaction("set aside") as conn:
            conn.execute(
                "INSERT INTO unreadable (id, created_ms, count, payload, reason)"
                " SELECT id, created_ms, count, payload, ? FROM batches WHERE id = ?",
                (reason, batch_id),
            )
            conn.execute("DELETE FROM batches WHERE id = ?", (batch_id,))
            conn.execute(_ADD_META, ("unreadable_batches_total", 1))
        log.error(
            "historian spool %s: batch %d is unreadable (%s); moved to its 'unreadable' table",
            self.path,
            batch_id,
            reason,
        )
        self._recount()
