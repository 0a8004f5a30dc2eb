"""The enterprise's copy of every site's MES records, fed by the sites' outbox messages.

One row per (site, kind, record key) holds the newest version applied. A message is applied only
if its version (the site's outbox id) is higher than the stored one, inside the upsert itself
(``ON CONFLICT ... DO UPDATE ... WHERE version < excluded.version``), so a duplicate, a message
delivered again after a reconnect or one overtaken by a newer change changes nothing, whatever
the order of arrival. A tombstone marks the record deleted and keeps its version, so an older
message arriving later cannot bring the record back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Engine

from andon.storage.engine import SQLITE_BEGIN_OPTION, create_engine_for, is_sqlite
from andon.storage.schema import enterprise_record_table

__all__ = [
    "MAX_RECORDS",
    "EnterpriseRecord",
    "EnterpriseRepository",
    "OutboxMessage",
    "SiteSummary",
    "parse_outbox_message",
]

_CHUNK = 300
#: The columns a newer message replaces.
_UPDATED = ("version", "deleted", "record_json", "created_ms", "received_ms")
#: Upper bound of one ``records`` call, so an API query cannot load the whole table.
MAX_RECORDS = 10_000


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One outbox message as a site publishes it (``andon.storage.outbox.OutboxEntry``)."""

    site: str
    kind: str
    record_key: str
    version: int
    deleted: bool
    record: dict[str, Any] | None
    created_ms: int

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.record_key}"


def _field(data: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ValueError(f"field {name!r} missing or not {getattr(kind, '__name__', kind)}")
    return value


def parse_outbox_message(payload: bytes) -> OutboxMessage:
    """Decode and check one message; ``ValueError`` saying what is wrong with it."""
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    site = _field(data, "site", str)
    kind = _field(data, "kind", str)
    key = _field(data, "record_key", str)
    version = _field(data, "version", int)
    deleted = _field(data, "deleted", bool)
    created_ms = _field(data, "created_ms", int)
    record = data.get("record")
    if not site or not kind or not key or version < 1:
        raise ValueError("empty site, kind or record_key, or a version below 1")
    if data.get("key") != f"{kind}:{key}":
        raise ValueError(f"key {data.get('key')!r} is not kind:record_key")
    if deleted != (record is None) or not (record is None or isinstance(record, dict)):
        raise ValueError("record must be an object, or null exactly when deleted")
    return OutboxMessage(site, kind, key, version, deleted, record, created_ms)


@dataclass(frozen=True, slots=True)
class EnterpriseRecord:
    site: str
    kind: str
    record_key: str
    version: int
    deleted: bool
    record: dict[str, Any] | None
    created_ms: int
    received_ms: int


@dataclass(frozen=True, slots=True)
class SiteSummary:
    site: str
    records: int  # current (not deleted)
    deleted: int  # tombstones
    last_version: int
    last_created_ms: int
    last_received_ms: int
    by_kind: dict[str, int]  # current records per kind


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _record(row: Any) -> EnterpriseRecord:
    text = row["record_json"]
    return EnterpriseRecord(
        row["site"], row["kind"], row["record_key"], int(row["version"]), bool(row["deleted"]),
        None if text is None else json.loads(text), int(row["created_ms"]),
        int(row["received_ms"]),
    )  # fmt: skip


class EnterpriseRepository:
    def __init__(self, engine: Engine | str | URL, *, clock: Callable[[], int] = _now_ms) -> None:
        if isinstance(engine, Engine):
            self._engine, self._owns = engine, False
        else:
            self._engine, self._owns = create_engine_for(engine), True
        self._sqlite = is_sqlite(self._engine.url)
        self._options = {SQLITE_BEGIN_OPTION: "IMMEDIATE"} if self._sqlite else {}
        self._clock = clock

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        if self._owns:
            self._engine.dispose()

    def apply(self, messages: Sequence[OutboxMessage]) -> int:
        """Apply the messages newer than what is stored, in one transaction; returns how many
        changed a row (the rest were duplicates or older than the stored version)."""
        newest: dict[tuple[str, str, str], OutboxMessage] = {}
        for message in messages:
            pk = (message.site, message.kind, message.record_key)
            held = newest.get(pk)
            if held is None or message.version > held.version:
                newest[pk] = message
        if not newest:
            return 0
        t = enterprise_record_table
        received = self._clock()
        with self._engine.connect() as connection:
            connection.execution_options(**self._options)
            with connection.begin():
                stored = self._versions(connection, list(newest))
                rows = [
                    {
                        "site": m.site, "kind": m.kind, "record_key": m.record_key,
                        "version": m.version, "deleted": m.deleted,
                        "record_json": None if m.record is None else json.dumps(
                            m.record, sort_keys=True, separators=(",", ":"), ensure_ascii=False
                        ),
                        "created_ms": m.created_ms, "received_ms": received,
                    }
                    for pk, m in newest.items()
                    if stored.get(pk, 0) < m.version
                ]  # fmt: skip
                if rows:
                    insert = (sqlite.insert if self._sqlite else postgresql.insert)(t)
                    excluded = insert.excluded
                    statement = insert.on_conflict_do_update(
                        index_elements=["site", "kind", "record_key"],
                        set_={name: excluded[name] for name in _UPDATED},
                        # The guard that makes it idempotent even against a concurrent writer.
                        where=t.c.version < excluded.version,
                    )
                    connection.execute(statement, rows)
        return len(rows)

    def _versions(
        self, connection: sa.Connection, keys: Sequence[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], int]:
        t = enterprise_record_table
        found: dict[tuple[str, str, str], int] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            query = sa.select(t.c.site, t.c.kind, t.c.record_key, t.c.version).where(
                sa.tuple_(t.c.site, t.c.kind, t.c.record_key).in_(chunk)
            )
            for site, kind, key, version in connection.execute(query):
                found[(site, kind, key)] = int(version)
        return found

    # -- reads ----------------------------------------------------------------------------------
    def sites(self) -> list[SiteSummary]:
        t = enterprise_record_table
        live = sa.case((t.c.deleted, 0), else_=1)
        totals = sa.select(
            t.c.site,
            sa.func.sum(live),
            sa.func.count(),
            sa.func.max(t.c.version),
            sa.func.max(t.c.created_ms),
            sa.func.max(t.c.received_ms),
        ).group_by(t.c.site)
        kinds = (
            sa.select(t.c.site, t.c.kind, sa.func.count())
            .where(t.c.deleted.is_(False))
            .group_by(t.c.site, t.c.kind)
        )
        with self._engine.connect() as connection:
            summary = connection.execute(totals).all()
            per_kind = connection.execute(kinds).all()
        by_site: dict[str, dict[str, int]] = {}
        for site, kind, count in per_kind:
            by_site.setdefault(site, {})[kind] = int(count)
        return [
            SiteSummary(
                site, int(current or 0), int(count) - int(current or 0), int(version),
                int(created), int(received), dict(sorted(by_site.get(site, {}).items())),
            )
            for site, current, count, version, created, received in sorted(summary)
        ]  # fmt: skip

    def records(
        self,
        site: str,
        kind: str | None = None,
        since_version: int = 0,
        limit: int = 1000,
    ) -> list[EnterpriseRecord]:
        """Records of ``site`` (of one ``kind`` if given) applied with a version above
        ``since_version``, tombstones included, in version order (page with the last one)."""
        t = enterprise_record_table
        query = (
            sa.select(t)
            .where(t.c.site == site, t.c.version > since_version)
            .order_by(t.c.version)
            .limit(max(1, min(limit, MAX_RECORDS)))
        )
        if kind is not None:
            query = query.where(t.c.kind == kind)
        with self._engine.connect() as connection:
            return [_record(r) for r in connection.execute(query).mappings()]

    def current(self, site: str) -> dict[tuple[str, str], dict[str, Any]]:
        """Every record of ``site`` not deleted: (kind, record key) -> content."""
        t = enterprise_record_table
        query = sa.select(t.c.kind, t.c.record_key, t.c.record_json).where(
            t.c.site == site, t.c.deleted.is_(False)
        )
        with self._engine.connect() as connection:
            return {(k, key): json.loads(text) for k, key, text in connection.execute(query)}
