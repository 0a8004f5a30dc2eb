"""The MES outbox: every committed MES record change, written in the transaction of the change.

The MES write paths (``mes``, ``mes_runs``, ``mes_edits``, ``mes_schedule``) call
``records_changed`` or ``mes_changes_written`` with their open connection,
so a change and its outbox row commit or roll back together. They do nothing unless the engine
was given a site with ``enable_outbox`` (the server does so when ``[outbox] enabled``).

Each row holds the record's *full current content* (a rollup bucket's absolute values read back
after its increments, never the increment), or a tombstone when the record is gone. Its id is
the message's version: monotonic, never reused. A newer change of a record replaces the record's
rows still waiting (they would be superseded anyway), so while the broker is away the outbox
grows with the number of records changed, not the number of changes. The dispatcher
(``andon.server.outbox_dispatcher``) reads rows in id order with ``OutboxRepository`` and deletes
them only after the broker's PUBACK.
"""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

from andon.storage.engine import SQLITE_BEGIN_OPTION, is_sqlite
from andon.storage.outbox_records import Record, read_all_records, read_records, record_key
from andon.storage.schema import outbox_site_table, outbox_table

if TYPE_CHECKING:
    from andon.storage.mes import MesChanges

__all__ = [
    "OutboxEntry",
    "OutboxRepository",
    "OutboxStats",
    "disable_outbox",
    "enable_outbox",
    "mes_changes_written",
    "outbox_site",
    "records_changed",
]

_SITES: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()
_CHUNK = 500


def enable_outbox(engine: Engine, site: str) -> None:
    """From now on, MES changes made through ``engine`` are also written to its outbox."""
    if not site:
        raise ValueError("the outbox needs a site name")
    _SITES[engine] = site


def disable_outbox(engine: Engine) -> None:
    _SITES.pop(engine, None)


def outbox_site(connection: sa.Connection) -> str | None:
    """The site this connection's changes are forwarded as, or None (no outbox)."""
    return _SITES.get(connection.engine)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _enqueue(
    connection: sa.Connection, site: str, kind: str, entries: Mapping[str, Record | None]
) -> None:
    """Insert one row per record (key -> content, None: deleted), replacing rows still waiting."""
    if not entries:
        return
    t = outbox_table
    keys = list(entries)
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        waiting = sa.select(t.c.id).where(t.c.kind == kind, t.c.record_key.in_(chunk))
        if connection.dialect.name == "postgresql":
            # A row the dispatcher is deleting right now (after its PUBACK) is skipped, not
            # waited for: it goes anyway, and waiting could deadlock the two.
            waiting = waiting.with_for_update(skip_locked=True)
        connection.execute(t.delete().where(t.c.id.in_(waiting.scalar_subquery())))
    now = _now_ms()
    connection.execute(
        t.insert(),
        [
            {
                "site": site,
                "kind": kind,
                "record_key": key,
                "deleted": record is None,
                "record_json": None if record is None else _dump(record),
                "created_ms": now,
            }
            for key, record in entries.items()
        ],
    )


def _dump(record: Record) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def records_changed(connection: sa.Connection, kind: str, keys: Iterable[tuple[Any, ...]]) -> None:
    """Records of ``kind`` changed (or were deleted) in this transaction: read them back and
    queue their current content (a tombstone for those gone)."""
    site = outbox_site(connection)
    if site is None:
        return
    found = read_records(connection, kind, keys)
    _enqueue(connection, site, kind, {record_key(k): r for k, r in found.items()})


def mes_changes_written(connection: sa.Connection, changes: MesChanges) -> None:
    """What ``MesRepository.write_changes`` wrote, read back: intervals and counts by key (a
    key deleted and not written again is a tombstone), rollup buckets with their absolute
    values and reasons after the increments."""
    if outbox_site(connection) is None:
        return
    if changes.intervals:
        records_changed(connection, "state_interval", changes.intervals)
    if changes.counts:
        records_changed(connection, "count", changes.counts)
    buckets = set(changes.rollups) | {(a, k, s) for a, k, s, _ in changes.reasons}
    if buckets:
        records_changed(connection, "rollup", sorted(buckets))


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One outbox row: a message to publish."""

    id: int
    site: str
    kind: str
    record_key: str
    deleted: bool
    record_json: str | None
    created_ms: int

    @property
    def key(self) -> str:
        """The idempotency key: kind and record key, e.g. ``run:["R1"]``."""
        return f"{self.kind}:{self.record_key}"

    def payload(self) -> bytes:
        """The JSON message; ``version`` is the outbox id (increasing per site)."""
        head = {
            "key": self.key,
            "kind": self.kind,
            "record_key": self.record_key,
            "version": self.id,
            "site": self.site,
            "deleted": self.deleted,
            "created_ms": self.created_ms,
        }
        body = json.dumps(head, separators=(",", ":"), ensure_ascii=False)
        record = "null" if self.record_json is None else self.record_json
        return f'{body[:-1]},"record":{record}}}'.encode()


@dataclass(frozen=True, slots=True)
class OutboxStats:
    depth: int
    oldest_created_ms: int | None


class OutboxRepository:
    """Reads and prunes the outbox (the dispatcher), reports it (health) and refills it
    (``resync``). Shares the engine of the MES repositories."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._options = {SQLITE_BEGIN_OPTION: "IMMEDIATE"} if is_sqlite(engine.url) else {}

    @property
    def engine(self) -> Engine:
        return self._engine

    def pending(self, limit: int, after_id: int = 0) -> list[OutboxEntry]:
        """The oldest ``limit`` rows with an id above ``after_id``, in id order."""
        t = outbox_table
        query = sa.select(t).where(t.c.id > after_id).order_by(t.c.id).limit(limit)
        with self._engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return [
            OutboxEntry(
                int(r["id"]), r["site"], r["kind"], r["record_key"], bool(r["deleted"]),
                r["record_json"], int(r["created_ms"]),
            )
            for r in rows
        ]  # fmt: skip

    def delete(self, ids: Iterable[int]) -> int:
        """Remove published rows (after their PUBACK); returns how many were still there."""
        wanted = sorted(set(ids))
        removed = 0
        if not wanted:
            return 0
        with self._engine.connect() as connection:
            connection.execution_options(**self._options)
            with connection.begin():
                for start in range(0, len(wanted), _CHUNK):
                    chunk = wanted[start : start + _CHUNK]
                    result = connection.execute(
                        outbox_table.delete().where(outbox_table.c.id.in_(chunk))
                    )
                    removed += result.rowcount
        return removed

    def stats(self) -> OutboxStats:
        t = outbox_table
        query = sa.select(sa.func.count(), sa.func.min(t.c.created_ms))
        with self._engine.connect() as connection:
            depth, oldest = connection.execute(query).one()
        return OutboxStats(int(depth), None if oldest is None else int(oldest))

    def resync(self, site: str) -> int:
        """Queue every current MES record, e.g. after the enterprise lost its copy; the
        enterprise then holds everything again. Returns how many were queued."""
        with self._engine.connect() as connection:
            connection.execution_options(**self._options)
            with connection.begin():
                return _queue_all(connection, site)

    def seed(self, site: str) -> int | None:
        """The first time forwarding starts for ``site``: queue every record the site already
        has (made before the outbox was on), once. Returns how many, or None when ``site`` was
        seeded before. Concurrent starts (two cluster nodes) seed it once."""
        t = outbox_site_table
        with self._engine.connect() as connection:
            connection.execution_options(**self._options)
            with connection.begin():
                insert = (sqlite_insert if connection.dialect.name == "sqlite" else pg_insert)(t)
                claim = insert.values(site=site, seeded_ms=_now_ms()).on_conflict_do_nothing()
                if connection.execute(claim.returning(t.c.site)).first() is None:
                    return None
                return _queue_all(connection, site)


def _queue_all(connection: sa.Connection, site: str) -> int:
    records = read_all_records(connection)
    by_kind: dict[str, dict[str, Record | None]] = {}
    for (kind, key), record in records.items():
        by_kind.setdefault(kind, {})[key] = record
    for kind, entries in by_kind.items():
        _enqueue(connection, site, kind, entries)
    return len(records)
