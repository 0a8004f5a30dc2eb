"""The edge's disk store-and-forward spool (DESIGN.md §4 item 1, SPARKPLUG.md §9, checklist C).

Every outgoing batch of values goes here first and leaves only after the broker acknowledged it.
A record is one batch of changes of one device (``device_id`` None: the edge node itself), kept in
append order in a SQLite file. Limits drop the *oldest* records, counted in persisted totals.

Durability: WAL with ``synchronous=FULL``. In WAL mode NORMAL survives a process kill but may
lose the last commits on power loss, because the WAL is only synced at checkpoints; the edge has
no other copy of those values, so ``append`` syncs the WAL on every commit. The cost is one fsync
per transaction, which is why ``append_many`` and ``ack``/``ack_through`` batch.

The payload format of a record is in ``spool_codec``.

``bytes`` in the stats and the ``max_bytes`` limit count payload bytes plus a fixed allowance per
record for the row and index: deterministic and cheap, unlike the file size, which keeps freed
pages for reuse.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from andon.edge.sources.base import TagChange
from andon.edge.spool_codec import (
    ChangeColumns,
    SpoolError,
    SpoolFullError,
    decode_changes,
    decode_columns,
    encode_changes,
)
from andon.testing.clock import Clock

__all__ = [
    "RECORD_OVERHEAD_BYTES",
    "ChangeColumns",
    "SpoolError",
    "SpoolFullError",
    "SpoolRecord",
    "SpoolStats",
    "StoreAndForwardSpool",
    "decode_changes",
    "encode_changes",
]

log = logging.getLogger(__name__)

RECORD_OVERHEAD_BYTES = 64
_SCHEMA_VERSION = 1
_ACK_CHUNK = 500  # ids per DELETE ... IN (...), well under SQLite's bound-parameter limit
_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: ids never reused, even when empty
    device_id TEXT NULL,
    created_ms INTEGER NOT NULL,
    first_ts_ms INTEGER NOT NULL,
    value_count INTEGER NOT NULL,
    payload BLOB NOT NULL
);
-- The rolling buffer: records the broker acknowledged in the last few seconds, re-sent as
-- history after the next births because a host that died unnoticed may never have seen them.
CREATE TABLE IF NOT EXISTS recent (
    id INTEGER PRIMARY KEY,
    device_id TEXT NULL,
    created_ms INTEGER NOT NULL,
    first_ts_ms INTEGER NOT NULL,
    value_count INTEGER NOT NULL,
    payload BLOB NOT NULL,
    sent_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS recent_sent_ms ON recent (sent_ms);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
"""
_INSERT = (
    "INSERT INTO records (device_id, created_ms, first_ts_ms, value_count, payload)"
    " VALUES (?, ?, ?, ?, ?) RETURNING id"
)
_ADD_META = (
    "INSERT INTO meta (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = value + excluded.value"
)
_Totals = tuple[int, int, int]  # records, values, bytes


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """One stored record; its payload is decoded on demand (each access decodes again).

    The flush reads ``columns`` (cheap: no object per value); ``changes`` is the full form.
    """

    id: int
    device_id: str | None
    created_ms: int
    first_ts_ms: int
    value_count: int
    payload: bytes

    @property
    def changes(self) -> tuple[TagChange, ...]:
        return decode_changes(self.device_id, self.payload)

    @property
    def columns(self) -> ChangeColumns:
        return decode_columns(self.payload)


@dataclass(frozen=True, slots=True)
class SpoolStats:
    records: int
    values: int
    bytes: int
    oldest_ts_ms: int | None  # first_ts_ms of the oldest record held
    dropped_records_total: int
    dropped_values_total: int


class StoreAndForwardSpool:
    """Ordered, size- and age-bounded, crash-safe queue of outgoing value batches.

    Thread-safe: the poller appends while the forwarder peeks and acks. Also holds the edge's
    small persistent integers (last bdSeq, highest fence epoch) in a ``kv`` table.
    """

    def __init__(
        self,
        path: Path,
        *,
        clock: Clock,
        max_bytes: int = 500 * 1024 * 1024,
        max_age_s: float = 31 * 24 * 3600.0,
        drop_warning_interval_s: float = 60.0,
    ) -> None:
        if max_bytes <= RECORD_OVERHEAD_BYTES or max_age_s <= 0:
            raise ValueError("max_bytes and max_age_s must be positive (max_bytes > one record)")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_age_ms = round(max_age_s * 1000.0)
        self._clock = clock
        self._warning_interval_s = drop_warning_interval_s
        self._last_warning_at: float | None = None
        self._dropped_since_warning = 0
        self._lock = threading.Lock()
        self._records = self._values = self._bytes = 0
        self._head_created_ms: int | None = None
        self._head_first_ts_ms: int | None = None
        self._conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._conn = conn
            conn.execute("PRAGMA busy_timeout = 5000")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            conn.execute("PRAGMA synchronous = FULL")  # see the module docstring
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if str(mode).lower() == "wal" and version <= _SCHEMA_VERSION:
                conn.executescript(_SCHEMA)
                conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
                row = conn.execute(
                    "SELECT count(*), coalesce(sum(value_count), 0),"
                    " coalesce(sum(length(payload)), 0) FROM records"
                ).fetchone()
        except sqlite3.Error as exc:
            self.close()
            raise self._error("open", exc) from exc
        if str(mode).lower() != "wal" or version > _SCHEMA_VERSION:
            self.close()
            raise SpoolError(
                f"spool {self.path}: needs WAL mode (got {mode}) and schema <= {_SCHEMA_VERSION}"
                f" (file has {version})"
            )
        self._records, self._values = int(row[0]), int(row[1])
        self._bytes = int(row[2]) + self._records * RECORD_OVERHEAD_BYTES
        with self._lock:
            self._read_head()
        self.enforce_limits()  # the limits may have been lowered since the file was written

    # -- writing -------------------------------------------------------------------------------

    def append(self, device_id: str | None, changes: Sequence[TagChange]) -> int:
        """Store one record; it is on disk when this returns. Returns its id."""
        return self.append_many([(device_id, changes)])[0]

    def append_many(self, batches: Sequence[tuple[str | None, Sequence[TagChange]]]) -> list[int]:
        """Store several records in one transaction (one fsync); ids in the order given."""
        now = self._clock.now_ms()
        rows = []
        for device_id, changes in batches:
            payload = encode_changes(device_id, changes)
            if len(payload) + RECORD_OVERHEAD_BYTES > self.max_bytes:
                raise SpoolError(
                    f"a record of {len(payload)} bytes exceeds the spool's max_bytes"
                    f" {self.max_bytes}; send smaller batches"
                )
            rows.append((device_id, now, min(c.ts_ms for c in changes), len(changes), payload))
        if not rows:
            return []
        incoming = sum(len(row[4]) + RECORD_OVERHEAD_BYTES for row in rows)
        with self._lock:  # held past the commit, so the in-memory totals never lag the file
            with self._transaction("append") as conn:
                dropped = self._drop_oldest(conn, now, incoming)
                ids = [int(conn.execute(_INSERT, row).fetchone()[0]) for row in rows]
                self._record_drops(conn, dropped)
            self._after_removal(dropped)
            self._records += len(rows)
            self._values += sum(row[3] for row in rows)
            self._bytes += incoming
            if self._head_created_ms is None:
                self._read_head()
        return ids

    def enforce_limits(self) -> None:
        """Drop records past max age (and beyond max_bytes); appends do this by themselves."""
        now = self._clock.now_ms()
        with self._lock:
            with self._transaction("enforce limits") as conn:
                dropped = self._drop_oldest(conn, now, 0)
                self._record_drops(conn, dropped)
            self._after_removal(dropped)

    # -- forwarding ----------------------------------------------------------------------------

    def peek(self, max_records: int, after_id: int | None = None) -> list[SpoolRecord]:
        """Up to ``max_records`` records, oldest first, with ids above ``after_id``."""
        sql = (
            "SELECT id, device_id, created_ms, first_ts_ms, value_count, payload"
            " FROM records WHERE id > ? ORDER BY id LIMIT ?"
        )
        rows = self._read("peek", sql, (after_id or 0, max_records))
        return [SpoolRecord(*row) for row in rows]

    def ack(self, ids: Iterable[int], *, retain_s: float = 0.0) -> int:
        """Delete these records (the broker has them). Unknown ids are ignored. Returns count.

        With ``retain_s`` > 0 the records move to the rolling buffer instead, in the same
        transaction, and rolling-buffer entries older than ``retain_s`` are pruned.
        """
        wanted = list(ids)
        chunks = [wanted[i : i + _ACK_CHUNK] for i in range(0, len(wanted), _ACK_CHUNK)]
        statements: list[tuple[str, list[int]]] = []
        if retain_s > 0:
            now = self._clock.now_ms()
            statements.append(
                ("DELETE FROM recent WHERE sent_ms < ?", [now - round(retain_s * 1000)])
            )
            statements += [
                (f"INSERT OR IGNORE INTO recent SELECT id, device_id, created_ms, first_ts_ms,"
                 f" value_count, payload, {int(now)} FROM records"
                 f" WHERE id IN ({','.join('?' * len(c))})", c)
                for c in chunks
            ]  # fmt: skip
        statements += [
            (f"DELETE FROM records WHERE id IN ({','.join('?' * len(c))})"
             " RETURNING value_count, length(payload)", c)
            for c in chunks
        ]  # fmt: skip
        return self._delete(statements)

    def recently_sent(self, since_ms: int) -> list[SpoolRecord]:
        """Rolling-buffer records acknowledged at or after ``since_ms``, oldest first."""
        sql = (
            "SELECT id, device_id, created_ms, first_ts_ms, value_count, payload"
            " FROM recent WHERE sent_ms >= ? ORDER BY id"
        )
        rows = self._read("recently sent", sql, (since_ms,))
        return [SpoolRecord(*row) for row in rows]

    def last_sent_ms(self) -> int | None:
        """When the newest rolling-buffer record was acknowledged (None when it is empty)."""
        rows = self._read("last sent", "SELECT max(sent_ms) FROM recent", ())
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    def last_id(self) -> int:
        """The id of the newest record ever appended (0 for a new spool)."""
        rows = self._read("last id", "SELECT seq FROM sqlite_sequence WHERE name = 'records'", ())
        return int(rows[0][0]) if rows else 0

    def ack_through(self, last_id: int) -> int:
        """Delete every record with an id up to ``last_id``. Returns how many there were."""
        sql = "DELETE FROM records WHERE id <= ? RETURNING value_count, length(payload)"
        return self._delete([(sql, [last_id])])

    def _delete(self, statements: list[tuple[str, list[int]]]) -> int:
        removed = (0, 0, 0)
        with self._lock:
            with self._transaction("ack") as conn:
                for sql, params in statements:
                    cursor = conn.execute(sql, params)
                    if sql.startswith("DELETE FROM records"):
                        removed = _add(removed, _totals(cursor.fetchall()))
            self._after_removal(removed, warn=False)  # acknowledged, not dropped
        return removed[0]

    # -- state and housekeeping ----------------------------------------------------------------

    def stats(self) -> SpoolStats:
        meta = dict(self._read("stats", "SELECT key, value FROM meta", ()))
        with self._lock:
            return SpoolStats(
                records=self._records,
                values=self._values,
                bytes=self._bytes,
                oldest_ts_ms=self._head_first_ts_ms,
                dropped_records_total=int(meta.get("dropped_records_total", 0)),
                dropped_values_total=int(meta.get("dropped_values_total", 0)),
            )

    def get_int(self, key: str) -> int | None:
        """A persisted edge integer (e.g. ``bdSeq``, ``fence_epoch``), None if never set."""
        rows = self._read("read state", "SELECT value FROM kv WHERE key = ?", (key,))
        return int(rows[0][0]) if rows else None

    def set_int(self, key: str, value: int) -> None:
        """Persist ``value`` under ``key``; durable when this returns."""
        with self._lock, self._transaction("write state") as conn:
            conn.execute(
                "INSERT INTO kv (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, int(value)),
            )

    def close(self) -> None:
        with self._lock:
            if self._conn is None:
                return
            try:  # fold the WAL back so the file alone is the spool; harmless if it fails
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                log.debug("spool %s: checkpoint on close failed", self.path, exc_info=True)
            self._conn.close()
            self._conn = None

    def __enter__(self) -> StoreAndForwardSpool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals (called with the lock held) -------------------------------------------------

    def _open_conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise SpoolError(f"spool {self.path} is closed")
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
            _rollback(conn)
            if isinstance(exc, sqlite3.Error):
                raise self._error(action, exc) from exc
            raise

    def _read(self, action: str, sql: str, params: Sequence[object]) -> list[Any]:
        with self._lock:
            try:
                return self._open_conn().execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise self._error(action, exc) from exc

    def _error(self, action: str, exc: sqlite3.Error) -> SpoolError:
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            return SpoolFullError(
                f"spool {self.path}: disk full during {action} ({self._records} records held);"
                " free disk space or lower max_bytes. Nothing was written."
            )
        return SpoolError(f"spool {self.path}: {action} failed: {exc}")

    def _read_head(self) -> None:
        row = (
            self._open_conn()
            .execute("SELECT created_ms, first_ts_ms FROM records ORDER BY id LIMIT 1")
            .fetchone()
        )
        self._head_created_ms, self._head_first_ts_ms = (None, None) if row is None else row

    def _drop_oldest(self, conn: sqlite3.Connection, now_ms: int, incoming: int) -> _Totals:
        """Drop the oldest records past max age or in the way of ``incoming`` more bytes."""
        cutoff = now_ms - self.max_age_ms
        excess = self._bytes + incoming - self.max_bytes
        head = self._head_created_ms
        if excess <= 0 and (head is None or head >= cutoff):
            return (0, 0, 0)
        # Only ever a prefix, so the spool stays a contiguous, ordered tail (even if the clock
        # stepped back and a younger record sits before an older one).
        last_id, dropped = None, (0, 0, 0)
        cursor = conn.execute(
            "SELECT id, created_ms, value_count, length(payload) FROM records ORDER BY id"
        )
        for rid, created, count, size in cursor:
            if created >= cutoff and dropped[2] >= excess:
                break
            last_id, dropped = rid, _add(dropped, (1, count, size + RECORD_OVERHEAD_BYTES))
        cursor.close()
        if last_id is not None:
            conn.execute("DELETE FROM records WHERE id <= ?", (last_id,))
        return dropped

    def _record_drops(self, conn: sqlite3.Connection, dropped: _Totals) -> None:
        if dropped[0]:
            conn.executemany(
                _ADD_META,
                [("dropped_records_total", dropped[0]), ("dropped_values_total", dropped[1])],
            )

    def _after_removal(self, removed: _Totals, *, warn: bool = True) -> None:
        if not removed[0]:
            return
        self._records -= removed[0]
        self._values -= removed[1]
        self._bytes -= removed[2]
        self._read_head()
        if warn:
            self._warn_drops(removed[0])

    def _warn_drops(self, dropped_records: int) -> None:
        self._dropped_since_warning += dropped_records
        now = self._clock.monotonic()
        last = self._last_warning_at
        if last is None or now - last >= self._warning_interval_s:
            log.warning(
                "store-and-forward spool %s full or aged out: dropped the %d oldest records"
                " since the last warning (limits: %d bytes, %d s)",
                self.path,
                self._dropped_since_warning,
                self.max_bytes,
                self.max_age_ms // 1000,
            )
            self._last_warning_at = now
            self._dropped_since_warning = 0


def _totals(rows: list[tuple[int, int]]) -> _Totals:
    """(records, values, bytes) of deleted rows of (value_count, payload length)."""
    size = sum(r[1] for r in rows) + len(rows) * RECORD_OVERHEAD_BYTES
    return (len(rows), sum(r[0] for r in rows), size)


def _add(a: _Totals, b: _Totals) -> _Totals:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def _rollback(conn: sqlite3.Connection) -> None:
    # Fails only when no transaction was open (BEGIN itself failed): then nothing to undo.
    with contextlib.suppress(sqlite3.Error):
        conn.execute("ROLLBACK")
