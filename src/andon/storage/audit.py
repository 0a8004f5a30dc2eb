"""The audit trail: who changed what, when, from what to what, and why.

Entries are only ever inserted. ``record`` takes the caller's connection when given one, so the
entry commits or rolls back together with the change it describes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from andon.storage.engine import create_engine_for
from andon.storage.schema import audit_log_table

__all__ = ["AuditEntry", "AuditLog", "Transaction"]

#: An open database transaction, as storage hands it to a caller's hook (e.g. to write the audit
#: entry of a change with ``AuditLog.record(..., connection=...)``); opaque outside storage.
Transaction = sa.Connection

#: Upper bound of one ``list`` call, so an API query cannot load the whole table.
MAX_LIST = 10_000


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at_ms: int
    username: str
    action: str
    entity: str
    entity_id: str
    before: Any
    after: Any
    comment: str


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _dump(value: Mapping[str, Any] | None) -> str | None:
    # sort_keys: the same state always reads the same, which makes diffs and tests simple.
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


class AuditLog:
    def __init__(self, engine: Engine | str | URL, *, clock: Callable[[], int] = _now_ms) -> None:
        self._owns_engine = not isinstance(engine, Engine)
        self.engine = create_engine_for(engine) if not isinstance(engine, Engine) else engine
        self._clock = clock

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    def record(
        self,
        username: str,
        action: str,
        entity: str,
        entity_id: str,
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any] | None,
        comment: str = "",
        *,
        connection: sa.Connection | None = None,
    ) -> int:
        """Insert one entry and return its id; inside ``connection``'s transaction if given."""
        values = {
            "at_ms": self._clock(),
            "username": username,
            "action": action,
            "entity": entity,
            "entity_id": entity_id,
            "before_json": _dump(before),
            "after_json": _dump(after),
            "comment": comment,
        }
        statement = audit_log_table.insert().values(**values).returning(audit_log_table.c.id)
        if connection is not None:
            return int(connection.execute(statement).scalar_one())
        with self.engine.begin() as own:
            return int(own.execute(statement).scalar_one())

    def list(
        self, *, entity: str | None = None, entity_id: str | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        """Newest first, optionally only one entity type or one entity."""
        table = audit_log_table
        query = sa.select(table).order_by(table.c.id.desc()).limit(max(1, min(limit, MAX_LIST)))
        if entity is not None:
            query = query.where(table.c.entity == entity)
        if entity_id is not None:
            query = query.where(table.c.entity_id == entity_id)
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return [
            AuditEntry(
                id=row["id"],
                at_ms=row["at_ms"],
                username=row["username"],
                action=row["action"],
                entity=row["entity"],
                entity_id=row["entity_id"],
                before=None if row["before_json"] is None else json.loads(row["before_json"]),
                after=None if row["after_json"] is None else json.loads(row["after_json"]),
                comment=row["comment"],
            )
            for row in rows
        ]
