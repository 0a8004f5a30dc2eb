"""The MES records the outbox forwards: their kinds, keys and full content as JSON-ready dicts.

A record is one row of an MES table, every column by name, plus what belongs to it in a child
table: a rollup bucket carries its availability loss per reason (``reasons``), a count edit its
corrections (``corrections``). Its key is the JSON array of its key columns (asset paths hold
``/`` and run ids any text, so no separator would be safe). The same encoding serves the outbox
(a changed record read back in the transaction of the change) and ``read_all_records`` (every
current record, for a resync and for the checks that an enterprise copy equals the site).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from andon.storage.schema import (
    mes_count_correction_table,
    mes_count_edit_table,
    mes_count_table,
    mes_order_table,
    mes_rollup_reason_table,
    mes_rollup_table,
    mes_run_table,
    mes_scheduled_run_table,
    mes_state_interval_table,
    mes_state_override_table,
)

__all__ = [
    "RECORD_KINDS",
    "Record",
    "RecordKind",
    "read_all_records",
    "read_records",
    "record_key",
]

#: A record's content: column name -> value (int, str, bool, None), plus its children.
Record = dict[str, Any]

#: Key tuples per query: SQLite allows 32766 parameters; three key columns x 300 stays far below.
_CHUNK = 300


@dataclass(frozen=True, slots=True)
class RecordKind:
    name: str
    table: sa.Table
    key_columns: tuple[str, ...]

    def key_of(self, row: Any) -> tuple[Any, ...]:
        return tuple(row[c] for c in self.key_columns)


RECORD_KINDS: dict[str, RecordKind] = {
    kind.name: kind
    for kind in (
        RecordKind("state_interval", mes_state_interval_table, ("asset", "start_ms")),
        RecordKind("count", mes_count_table, ("asset", "ts_ms")),
        RecordKind("rollup", mes_rollup_table, ("asset", "kind", "start_ms")),
        RecordKind("order", mes_order_table, ("id",)),
        RecordKind("run", mes_run_table, ("id",)),
        RecordKind("count_edit", mes_count_edit_table, ("id",)),
        RecordKind("added_state", mes_state_override_table, ("asset", "start_ms")),
        RecordKind("scheduled_run", mes_scheduled_run_table, ("id",)),
    )
}


def record_key(values: Sequence[Any]) -> str:
    """The text key of a record from its key column values, e.g. ``["Site/Line/Cell",1000]``."""
    return json.dumps(list(values), separators=(",", ":"), ensure_ascii=False)


def _plain(row: Any, table: sa.Table) -> Record:
    # Booleans come back as bool on both databases; numbers as int. Nothing else is stored.
    return {column.name: row[column.name] for column in table.columns}


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _where_keys(kind: RecordKind, keys: Sequence[tuple[Any, ...]]) -> Any:
    table = kind.table
    if len(kind.key_columns) == 1:
        return table.c[kind.key_columns[0]].in_([k[0] for k in keys])
    return sa.tuple_(*(table.c[c] for c in kind.key_columns)).in_(keys)


def _child_rows(
    connection: sa.Connection,
    table: sa.Table,
    parent_columns: Sequence[str],
    parents: Sequence[tuple[Any, ...]] | None,
) -> Iterator[Any]:
    """Rows of a child table belonging to ``parents`` (None: the whole table)."""
    if parents is None:
        yield from connection.execute(sa.select(table)).mappings()
        return
    columns = [table.c[c] for c in parent_columns]
    for chunk in _chunks(parents):
        condition = (
            columns[0].in_([p[0] for p in chunk])
            if len(columns) == 1
            else sa.tuple_(*columns).in_(chunk)
        )
        yield from connection.execute(sa.select(table).where(condition)).mappings()


def _add_children(
    connection: sa.Connection,
    kind: RecordKind,
    records: dict[tuple[Any, ...], Record],
    everything: bool = False,
) -> None:
    """Fill in what belongs to each record from its child table (rollups and count edits)."""
    parents = None if everything else list(records)
    if kind.name == "rollup":
        reasons: dict[tuple[Any, ...], dict[str, int]] = {key: {} for key in records}
        for row in _child_rows(
            connection, mes_rollup_reason_table, ("asset", "kind", "start_ms"), parents
        ):
            parent = reasons.get((row["asset"], row["kind"], row["start_ms"]))
            if parent is not None:
                parent[row["reason_id"]] = row["loss_ms"]
        for key, record in records.items():
            record["reasons"] = dict(sorted(reasons[key].items()))
    elif kind.name == "count_edit":
        corrections: dict[tuple[Any, ...], list[Record]] = {key: [] for key in records}
        for row in _child_rows(connection, mes_count_correction_table, ("edit_id",), parents):
            parent_list = corrections.get((row["edit_id"],))
            if parent_list is not None:
                parent_list.append(
                    {name: row[name] for name in ("asset", "ts_ms", "total", "reject")}
                )
        for key, record in records.items():
            record["corrections"] = sorted(corrections[key], key=lambda c: c["ts_ms"])


def read_records(
    connection: sa.Connection, kind_name: str, keys: Iterable[tuple[Any, ...]]
) -> dict[tuple[Any, ...], Record | None]:
    """The current content of the records of ``keys`` (None: no such record any more)."""
    kind = RECORD_KINDS[kind_name]
    wanted = list(dict.fromkeys(keys))
    found: dict[tuple[Any, ...], Record] = {}
    for chunk in _chunks(wanted):
        rows = connection.execute(sa.select(kind.table).where(_where_keys(kind, chunk)))
        for row in rows.mappings():
            found[kind.key_of(row)] = _plain(row, kind.table)
    _add_children(connection, kind, found)
    return {key: found.get(key) for key in wanted}


def read_all_records(connection: sa.Connection) -> dict[tuple[str, str], Record]:
    """Every current MES record: (kind, record key) -> content."""
    out: dict[tuple[str, str], Record] = {}
    for kind in RECORD_KINDS.values():
        rows = connection.execute(sa.select(kind.table)).mappings()
        records = {kind.key_of(row): _plain(row, kind.table) for row in rows}
        _add_children(connection, kind, records, everything=True)
        for key, record in records.items():
            out[(kind.name, record_key(key))] = record
    return out
