"""Sums the MES edits and queries need, computed by the database rather than from record lists.

A count edit reads the figures of each segment of its period, a run change re-rates the counts
of its span, a query by shift reads every shift bucket of a period: over months of 1 s counts a
list of records would be millions of objects. Here each is one grouped query (segments are
passed as a ``VALUES`` table, a bounded number per query), whose result grows with the number of
segments, not with the number of counts.

Counts are the derived ``mes_count`` rows plus the corrections of the count edits in force
(``mes_count_correction``: a reverted edit's corrections are deleted), as every reader of counts
sees them.

A trend reads its buckets as plain rows already in ``TimeAccount`` field order, no-data time
included (``account_rows``): a year of hours is 8,760 rows, and per-row conversions in Python
were most of its cost.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import pairwise
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from andon.domain import AssetPath, CountCorrection, ProducedCount, TimeAccount
from andon.domain.counts import CountRecord
from andon.domain.oee import SUMMED_FIELDS
from andon.storage.schema import (
    MES_ACCOUNT_COLUMNS,
    mes_count_correction_table,
    mes_count_table,
    mes_rollup_reason_table,
    mes_rollup_table,
)

__all__ = ["BucketValues", "CountGroup", "MesAggregates"]

#: ``(record, times)``: ``times`` equal count records, the first instant of their segment.
CountGroup = tuple[CountRecord, int]

#: Segments per query: two bound values each, far below SQLite's and PostgreSQL's limits.
_SEGMENTS_PER_QUERY = 1000

#: ``(start_ms, end_ms, *values)``: one bucket, ``values`` the positional arguments of a
#: ``TimeAccount`` without reasons (``TimeAccount(*row[2:])``).
BucketValues = Sequence[int]

#: The stored columns whose sum is a bucket's covered time (all time but no-data time).
_COVERED_TIME_COLUMNS = (
    "running_ms",
    "setup_ms",
    "unplanned_downtime_ms",
    "blocked_ms",
    "starved_ms",
    "planned_downtime_ms",
    "not_scheduled_ms",
)
if {*MES_ACCOUNT_COLUMNS, "no_data_ms"} != set(SUMMED_FIELDS) or not set(
    _COVERED_TIME_COLUMNS
) <= set(MES_ACCOUNT_COLUMNS):
    raise ImportError("MES_ACCOUNT_COLUMNS no longer match TimeAccount's fields")


def _segment_chunks(bounds: Sequence[int]) -> Iterator[list[tuple[int, int]]]:
    segments = list(pairwise(bounds))
    for i in range(0, len(segments), _SEGMENTS_PER_QUERY):
        yield segments[i : i + _SEGMENTS_PER_QUERY]


def _grouped(
    table: sa.Table, asset: AssetPath, segments: list[tuple[int, int]], *columns: Any
) -> Any:
    """``columns`` of the asset's rows of ``table`` in the segments, grouped by segment (its
    start first in each result row)."""
    seg = (
        sa.values(sa.column("a", sa.BigInteger), sa.column("b", sa.BigInteger), name="segment")
        .data(segments)
        .cte("segment")
    )
    inside = sa.and_(table.c.ts_ms >= seg.c.a, table.c.ts_ms < seg.c.b)
    return (
        sa.select(seg.c.a, *columns)
        .select_from(table.join(seg, inside))
        .where(
            table.c.asset == str(asset),
            table.c.ts_ms >= segments[0][0],
            table.c.ts_ms < segments[-1][1],
        )
        .group_by(seg.c.a)
    )


class MesAggregates:
    """Reads on one engine (shared with ``MesRepository``)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def figures(
        self, asset: AssetPath, bounds: Sequence[int], *, edit_id: int | None = None
    ) -> list[tuple[int, int]]:
        """(good, reject) of each segment [bounds[i], bounds[i+1]): the derived counts plus the
        corrections in force; with ``edit_id``, that edit's corrections only."""
        sums: dict[int, tuple[int, int]] = {}
        tables = [mes_count_correction_table] if edit_id is not None else [
            mes_count_table, mes_count_correction_table,
        ]  # fmt: skip
        with self._engine.connect() as connection:
            for segments in _segment_chunks(bounds):
                for table in tables:
                    query = _grouped(
                        table, asset, segments,
                        sa.func.sum(table.c.total - table.c.reject), sa.func.sum(table.c.reject),
                    )  # fmt: skip
                    if edit_id is not None:
                        query = query.where(table.c.edit_id == edit_id)
                    for start, good, reject in connection.execute(query):
                        before = sums.get(int(start), (0, 0))
                        sums[int(start)] = (before[0] + int(good), before[1] + int(reject))
        return [sums.get(start, (0, 0)) for start in bounds[:-1]]

    def groups(self, asset: AssetPath, bounds: Sequence[int]) -> list[CountGroup]:
        """The counts and corrections in force in [bounds[0], bounds[-1]), as equal records per
        segment: each group is a record at its segment's first instant and how many there are
        (a count's contribution to the rollups depends only on its bucket, its cycle time,
        total, reject and startup: cut the segments wherever those may change)."""
        found: list[CountGroup] = []
        c, k = mes_count_table, mes_count_correction_table
        with self._engine.connect() as connection:
            for segments in _segment_chunks(bounds):
                counts = _grouped(
                    c, asset, segments, c.c.total, c.c.reject, c.c.startup, sa.func.count()
                ).group_by(c.c.total, c.c.reject, c.c.startup)
                for start, total, reject, startup, times in connection.execute(counts):
                    count = ProducedCount(asset, int(start), int(total), int(reject), bool(startup))
                    found.append((count, int(times)))
                corrections = _grouped(
                    k, asset, segments, k.c.total, k.c.reject, sa.func.count()
                ).group_by(k.c.total, k.c.reject)
                for start, total, reject, times in connection.execute(corrections):
                    correction = CountCorrection(asset, int(start), int(total), int(reject))
                    found.append((correction, int(times)))
        return found

    def count_span(self, asset: AssetPath, start_ms: int, end_ms: int) -> tuple[int, int] | None:
        """(first, last) instant with a count or a correction in [start_ms, end_ms), None if
        there is none."""
        firsts: list[int] = []
        lasts: list[int] = []
        with self._engine.connect() as connection:
            for table in (mes_count_table, mes_count_correction_table):
                query = sa.select(sa.func.min(table.c.ts_ms), sa.func.max(table.c.ts_ms)).where(
                    table.c.asset == str(asset),
                    table.c.ts_ms >= start_ms,
                    table.c.ts_ms < end_ms,
                )
                first, last = connection.execute(query).one()
                if first is not None:
                    firsts.append(int(first))
                    lasts.append(int(last))
        return (min(firsts), max(lasts)) if firsts else None

    def rollups_by_start(
        self, assets: Sequence[AssetPath], kind: str, start_ms: int, end_ms: int
    ) -> dict[int, TimeAccount]:
        """The buckets of ``assets`` starting in [start_ms, end_ms), summed per bucket start,
        with their loss by reason: two grouped queries for a whole period of shifts."""
        t, rt = mes_rollup_table, mes_rollup_reason_table
        names = [str(a) for a in assets]
        sums = (
            sa.select(t.c.start_ms, *(sa.func.sum(t.c[n]).label(n) for n in MES_ACCOUNT_COLUMNS))
            .where(t.c.asset.in_(names), t.c.kind == kind, t.c.start_ms >= start_ms,
                   t.c.start_ms < end_ms)
            .group_by(t.c.start_ms)
        )  # fmt: skip
        by_reason = (
            sa.select(rt.c.start_ms, rt.c.reason_id, sa.func.sum(rt.c.loss_ms))
            .where(rt.c.asset.in_(names), rt.c.kind == kind, rt.c.start_ms >= start_ms,
                   rt.c.start_ms < end_ms)
            .group_by(rt.c.start_ms, rt.c.reason_id)
        )  # fmt: skip
        with self._engine.connect() as connection:
            rows = connection.execute(sums).mappings().all()
            reasons: dict[int, list[tuple[str, int]]] = {}
            for start, reason_id, ms in connection.execute(by_reason):
                if ms:
                    reasons.setdefault(int(start), []).append((reason_id, int(ms)))
        found = {}
        for row in rows:
            start = int(row["start_ms"])
            values = {name: int(row[name] or 0) for name in MES_ACCOUNT_COLUMNS}
            losses = tuple(sorted(reasons.get(start, ())))
            found[start] = TimeAccount(**values, loss_by_reason=losses)
        return found

    def account_rows(
        self, assets: Sequence[AssetPath], kind: str, start_ms: int, end_ms: int
    ) -> Sequence[BucketValues]:
        """The buckets of ``assets`` starting in [start_ms, end_ms), summed over the assets per
        bucket start, in order, without reasons (a trend does not need them). A bucket's
        no-data time is the rest of its span times the number of assets; the database computes
        it and every value comes back an integer in ``TimeAccount`` field order."""
        t = mes_rollup_table
        names = [str(a) for a in assets]
        where = (
            t.c.asset.in_(names),
            t.c.kind == kind,
            t.c.start_ms >= start_ms,
            t.c.start_ms < end_ms,
        )
        if len(names) == 1:
            # One asset: its rows as stored, in key order, no grouping (a year's trend of one
            # machine is the common question, and SUM/GROUP BY over 8,760 rows doubled it).
            end: Any = t.c.end_ms
            values: dict[str, Any] = {n: t.c[n] for n in MES_ACCOUNT_COLUMNS}
            group_by: tuple[Any, ...] = ()
        else:
            # SUM of BIGINT is NUMERIC on PostgreSQL (Decimal in Python): cast back.
            end = sa.func.max(t.c.end_ms)
            values = {n: sa.cast(sa.func.sum(t.c[n]), sa.BigInteger) for n in MES_ACCOUNT_COLUMNS}
            group_by = (t.c.start_ms,)
        covered = sum((values[n] for n in _COVERED_TIME_COLUMNS[1:]), values["running_ms"])
        values["no_data_ms"] = sa.cast((end - t.c.start_ms) * len(names) - covered, sa.BigInteger)
        query = (
            sa.select(t.c.start_ms, end, *(values[n] for n in SUMMED_FIELDS))
            .where(*where)
            .group_by(*group_by)
            .order_by(t.c.start_ms)
        )
        with self._engine.connect() as connection:
            return connection.execute(query).all()
