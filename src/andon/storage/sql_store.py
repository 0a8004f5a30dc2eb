"""The part of the historian store that SQLite and PostgreSQL share: SQLAlchemy Core queries.

The dialect modules (``sqlite.py``, ``postgresql.py``) supply only the two write primitives
that differ: creating tags while ignoring existing ones, and bulk-inserting sample rows while
ignoring duplicates.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from andon.cluster.model import FencingToken
from andon.storage.cluster_fencing import check_fence
from andon.storage.codec import (
    DATATYPE_UINT64,
    SampleRow,
    decode_value,
    encode_sample_rows,
    infer_datatype,
)
from andon.storage.engine import create_engine_for
from andon.storage.schema import quarantine_table, sample_table, tag_table
from andon.storage.store import DEFAULT_HISTORY_LIMIT
from andon.storage.types import HistoryBucket, QuarantinedSample, Sample, TagInfo

__all__ = ["SqlHistorianStore"]

#: Tags looked up per SELECT ... WHERE path IN (...): well under SQLite's parameter limit.
_TAG_LOOKUP_CHUNK = 500

_TagRef = tuple[int, int]  # (tag id, datatype)


class SqlHistorianStore(ABC):
    """Base of the SQL historian stores; subclasses implement ``_insert_tags``/``_insert_rows``."""

    #: Execution options for write transactions (SQLite asks for BEGIN IMMEDIATE).
    _write_options: Mapping[str, Any] = {}
    #: A table of samples not yet moved to ``sample`` (same columns and key) that reads add,
    #: leaving out its rows that ``sample`` also holds: the first value written is the one
    #: kept. None: every sample is in ``sample``.
    _staged_table: sa.Table | None = None

    def __init__(self, database: str | URL | Engine) -> None:
        if isinstance(database, Engine):
            self._engine = database
            self._owns_engine = False
        else:
            self._engine = create_engine_for(database)
            self._owns_engine = True
        # path -> (id, datatype) of committed tags only, so a rolled-back batch cannot leave
        # an id in the cache that does not exist in the database.
        self._tag_cache: dict[str, _TagRef] = {}
        self._cache_lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        return self._engine

    # -- dialect primitives --------------------------------------------------------------

    @abstractmethod
    def _insert_tags(self, connection: sa.Connection, rows: list[dict[str, Any]]) -> None:
        """Insert tag rows, silently skipping paths that already exist."""

    @abstractmethod
    def _insert_rows(
        self, connection: sa.Connection, rows: list[SampleRow], fence: FencingToken | None
    ) -> int:
        """Insert sample rows ignoring (tag_id, ts) conflicts; return the number inserted.
        With a ``fence``, call ``check_fence`` before the first write to ``sample``; a store
        that copies the rows first calls ``bound_fenced_transaction`` before anything else
        (see ``andon.storage.cluster_fencing``)."""

    def _after_commit(self, connection: sa.Connection) -> None:  # noqa: B027 (optional hook)
        """Called after a write transaction committed on ``connection``; nothing by default."""

    # -- writes ---------------------------------------------------------------------------

    def write_batch(self, samples: Sequence[Sample], fence: FencingToken | None = None) -> int:
        if not samples:
            return 0
        with self._engine.connect() as connection:
            connection.execution_options(**self._write_options)
            tags = self._resolve_tags(connection, samples, fence)
            rows = encode_sample_rows(samples, tags)
            # In key order: the rows of one tag then go into its leaf pages one after the
            # other instead of every tag's page in turn for each instant. Once the table
            # outgrows the page cache that is a third less CPU a value (25,000 tags at 1 Hz,
            # 150 s: 69,943 -> 101,596 values/s, python -m andon.bench.microbench_wide).
            # (tag_id, ts) is unique in the batch, so the comparison never goes further.
            rows.sort()
            with connection.begin():
                inserted = self._insert_rows(connection, rows, fence)
            self._after_commit(connection)
        return inserted

    def _resolve_tags(
        self, connection: sa.Connection, samples: Sequence[Sample], fence: FencingToken | None
    ) -> Mapping[str, _TagRef]:
        """path -> tag for every sample. Tags not known yet are created in a transaction of
        their own, fenced like the samples': the samples' transaction then holds no lock on
        ``tag`` while it copies (cluster_fencing). They are created only once every sample of
        the batch has been found storable, so a batch refused for its values leaves no tag
        behind (nor a datatype taken from a value that was refused). A tag committed when the
        samples' transaction then fails (an outage, a fence) is harmless: tags are never
        deleted, and the retry finds it."""
        cache = self._tag_cache
        # By position, not by name: the insert process passes plain tuples of Sample's fields.
        unknown = set(map(itemgetter(0), samples)).difference(cache)
        if not unknown:
            return cache
        datatypes: dict[str, int] = {}
        for tag, _, value, _, _, datatype in samples:
            if tag in unknown and not datatypes.get(tag):
                datatypes[tag] = datatype or infer_datatype(value)
        # Distinct ids that no tag has, so that the encoder's duplicate check sees every sample.
        placeholders = {path: (-n, datatypes[path]) for n, path in enumerate(unknown, 1)}
        encode_sample_rows(samples, {**cache, **placeholders})  # raises UnstorableValueError
        with connection.begin():
            if fence is not None:
                check_fence(connection, fence)
            created = self._create_tags(connection, datatypes)
        with self._cache_lock:
            self._tag_cache.update(created)
        return {**cache, **created}

    def _create_tags(
        self, connection: sa.Connection, datatypes: Mapping[str, int]
    ) -> dict[str, _TagRef]:
        now_ms = time.time_ns() // 1_000_000
        # Sorted so that two writers creating the same tags lock them in the same order and
        # cannot deadlock.
        paths = sorted(datatypes)
        self._insert_tags(
            connection,
            [{"path": p, "datatype": datatypes[p], "created_at": now_ms} for p in paths],
        )
        return self._select_tags(connection, paths)

    def _select_tags(self, connection: sa.Connection, paths: list[str]) -> dict[str, _TagRef]:
        found: dict[str, _TagRef] = {}
        columns = (tag_table.c.path, tag_table.c.id, tag_table.c.datatype)
        for i in range(0, len(paths), _TAG_LOOKUP_CHUNK):
            chunk = paths[i : i + _TAG_LOOKUP_CHUNK]
            query = sa.select(*columns).where(tag_table.c.path.in_(chunk))
            for path, tag_id, datatype in connection.execute(query):
                found[path] = (tag_id, datatype)
        return found

    def quarantine(self, tag: str, ts_ms: int, raw: str, reason: str) -> None:
        with self._engine.connect() as connection:
            connection.execution_options(**self._write_options)
            with connection.begin():
                connection.execute(
                    quarantine_table.insert().values(
                        tag_path=tag,
                        ts=ts_ms,
                        raw_value=raw,
                        reason=reason,
                        created_at=time.time_ns() // 1_000_000,
                    )
                )

    # -- reads ------------------------------------------------------------------------------

    def _tag(self, connection: sa.Connection, tag: str) -> _TagRef | None:
        cached = self._tag_cache.get(tag)
        if cached is not None:
            return cached
        return self._select_tags(connection, [tag]).get(tag)

    def history(
        self, tag: str, start_ms: int, end_ms: int, limit: int = DEFAULT_HISTORY_LIMIT
    ) -> list[Sample]:
        return self._samples(tag, (start_ms, end_ms), False, limit)

    def latest(self, tag: str) -> Sample | None:
        found = self._samples(tag, None, True, 1)
        return found[0] if found else None

    def _sources(self, tag_id: int | None) -> list[tuple[sa.Table, list[sa.ColumnElement[bool]]]]:
        """The tables that hold samples, each with the conditions that pick its rows of
        ``tag_id`` (None: of every tag) and leave out staged duplicates of stored rows."""
        sources: list[tuple[sa.Table, list[sa.ColumnElement[bool]]]] = [(sample_table, [])]
        staged = self._staged_table
        if staged is not None:
            s, r = sample_table.c, staged.c
            stored = sa.select(sa.literal(1)).where(s.tag_id == r.tag_id, s.ts == r.ts)
            sources.append((staged, [~stored.exists()]))
        if tag_id is not None:
            for table, conditions in sources:
                conditions.insert(0, table.c.tag_id == tag_id)
        return sources

    def _samples(
        self, tag: str, span: tuple[int, int] | None, newest_first: bool, limit: int
    ) -> list[Sample]:
        """Samples of one tag, decoded with the tag's datatype."""
        found: list[Sample] = []
        with self._engine.connect() as connection:
            ref = self._tag(connection, tag)
            if ref is None:
                return []
            tag_id, datatype = ref
            sources = self._sources(tag_id)
            for table, conditions in sources:
                c = table.c
                if span is not None:
                    conditions.extend((c.ts >= span[0], c.ts < span[1]))
                query = (
                    sa.select(c.ts, c.value_double, c.value_int, c.value_text, c.value_bytes,
                              c.quality, c.is_historical)
                    .where(*conditions)
                    .order_by(c.ts.desc() if newest_first else c.ts)
                    .limit(limit)
                )  # fmt: skip
                found.extend(
                    Sample(tag, ts, decode_value(vd, vi, vt, vb, datatype), quality, bool(hist),
                           datatype)
                    for ts, vd, vi, vt, vb, quality, hist in connection.execute(query)
                )  # fmt: skip
        if len(sources) > 1:  # each table's rows are in order; together they must be again
            found.sort(key=attrgetter("ts_ms"), reverse=newest_first)
            del found[limit:]
        return found

    def aggregate(
        self, tag: str, start_ms: int, end_ms: int, bucket_ms: int
    ) -> list[HistoryBucket]:
        if bucket_ms <= 0:
            raise ValueError(f"bucket_ms must be positive, got {bucket_ms}")
        buckets: dict[int, _Bucket] = {}
        with self._engine.connect() as connection:
            ref = self._tag(connection, tag)
            if ref is None:
                return []
            tag_id, datatype = ref
            for table, conditions in self._sources(tag_id):
                query = _aggregate_query(
                    table, tag_id, conditions, datatype, (start_ms, end_ms), bucket_ms
                )
                for start, n, numbers, lo, hi, total, last_ts, vd, vi, vt, vb in connection.execute(
                    query
                ):
                    bucket = _Bucket(
                        int(n), int(numbers), lo, hi, total, int(last_ts), (vd, vi, vt, vb)
                    )
                    earlier = buckets.get(int(start))
                    buckets[int(start)] = bucket if earlier is None else earlier.combine(bucket)
        return [
            HistoryBucket(
                start_ms=start,
                count=b.rows,
                min=None if b.lo is None else float(b.lo),
                max=None if b.hi is None else float(b.hi),
                avg=float(b.total) / b.numbers if b.numbers else None,
                last=decode_value(*b.last, datatype),
                last_ts_ms=b.last_ts,
            )
            for start, b in sorted(buckets.items())
        ]

    def tags(self) -> list[TagInfo]:
        query = sa.select(tag_table.c.path, tag_table.c.datatype).order_by(tag_table.c.path)
        with self._engine.connect() as connection:
            return [TagInfo(path, datatype) for path, datatype in connection.execute(query)]

    def count(self, tag: str | None = None) -> int:
        total = 0
        with self._engine.connect() as connection:
            tag_id: int | None = None
            if tag is not None:
                ref = self._tag(connection, tag)
                if ref is None:
                    return 0
                tag_id = ref[0]
            for table, conditions in self._sources(tag_id):
                query = sa.select(sa.func.count()).select_from(table).where(*conditions)
                total += int(connection.execute(query).scalar_one())
        return total

    def quarantined(self) -> list[QuarantinedSample]:
        q = quarantine_table.c
        query = sa.select(q.id, q.tag_path, q.ts, q.raw_value, q.reason, q.created_at).order_by(
            q.id
        )
        with self._engine.connect() as connection:
            return [QuarantinedSample(*row) for row in connection.execute(query)]

    def close(self) -> None:
        if self._owns_engine:
            self._engine.dispose()


def _aggregate_query(
    table: sa.Table,
    tag_id: int,
    conditions: list[sa.ColumnElement[bool]],
    datatype: int,
    span: tuple[int, int],
    bucket_ms: int,
) -> sa.Select[Any]:
    """Per bucket of ``table``'s rows of ``tag_id`` matching ``conditions`` in ``span``
    [start, end): the count, the numbers' count, min, max and sum, and the last value."""
    s = table.c
    width = sa.literal(bucket_ms, sa.BigInteger)
    # Floor to a multiple of bucket_ms; written with %, which truncates towards zero in both
    # databases, so that timestamps before 1970 floor correctly too.
    bucket = (s.ts - ((s.ts % width) + width) % width).label("bucket")
    as_double: sa.ColumnElement[Any] = sa.cast(s.value_int, sa.Double)
    if datatype == DATATYPE_UINT64:
        as_double = sa.case((s.value_int < 0, as_double + 2.0**64), else_=as_double)
    number = sa.func.coalesce(s.value_double, as_double).label("number")
    in_range = (
        sa.select(bucket, s.ts, number)
        .where(*conditions, s.ts >= span[0], s.ts < span[1])
        .subquery("in_range")
    )
    per_bucket = (
        sa.select(
            in_range.c.bucket,
            sa.func.count().label("n"),
            sa.func.count(in_range.c.number).label("numbers"),
            sa.func.min(in_range.c.number).label("lo"),
            sa.func.max(in_range.c.number).label("hi"),
            sa.func.sum(in_range.c.number).label("total"),
            sa.func.max(in_range.c.ts).label("last_ts"),
        )
        .group_by(in_range.c.bucket)
        .subquery("per_bucket")
    )
    # The last value of each bucket is one key lookup per bucket.
    return (
        sa.select(
            per_bucket.c.bucket,
            per_bucket.c.n,
            per_bucket.c.numbers,
            per_bucket.c.lo,
            per_bucket.c.hi,
            per_bucket.c.total,
            per_bucket.c.last_ts,
            s.value_double,
            s.value_int,
            s.value_text,
            s.value_bytes,
        )
        .join_from(per_bucket, table, sa.and_(s.tag_id == tag_id, s.ts == per_bucket.c.last_ts))
        .order_by(per_bucket.c.bucket)
    )


class _Bucket(NamedTuple):
    """One table's figures of a bucket, before decoding (``numbers``: values avg is over)."""

    rows: int
    numbers: int
    lo: Any
    hi: Any
    total: Any  # the numbers' sum: sums of two tables add up, their means would not
    last_ts: int
    last: tuple[Any, Any, Any, Any]  # value_double, value_int, value_text, value_bytes

    def combine(self, other: _Bucket) -> _Bucket:
        """The bucket of both tables' rows (no instant is in both)."""
        numbers = self.numbers + other.numbers
        parts = [b for b in (self, other) if b.numbers]
        later = other if other.last_ts > self.last_ts else self
        return _Bucket(
            self.rows + other.rows,
            numbers,
            min((b.lo for b in parts), default=None),
            max((b.hi for b in parts), default=None),
            sum(float(b.total) for b in parts) if numbers else None,
            later.last_ts,
            later.last,
        )
