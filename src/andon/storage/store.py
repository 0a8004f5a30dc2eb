"""The historian store interface, shared by the SQLite, PostgreSQL and in-memory stores.

Semantics every implementation keeps (the contract suite in ``tests/contract`` checks them):

* Idempotent on (tag, ts_ms): a sample whose key is already stored is ignored, the first write
  wins, also within one batch. ``write_batch`` returns the number of new rows only.
* A batch is one transaction: all of it is stored or none of it.
* A value that cannot be stored exactly raises :class:`~andon.storage.codec.UnstorableValueError`
  (a ``ValueError``) and nothing of the batch is stored; see ``andon.storage.codec`` for what
  round-trips and how (int64, uint64, +/-inf, NaN for Float/Double tags, bool, str, bytes, None).
* Time ranges are half-open: ``start_ms`` inclusive, ``end_ms`` exclusive.
* A database that is unreachable raises ``sqlalchemy.exc.OperationalError``; the historian
  writer retries those and treats every other exception as a property of the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from andon.cluster.model import FencingToken
from andon.storage.types import HistoryBucket, QuarantinedSample, Sample, TagInfo

__all__ = ["DEFAULT_HISTORY_LIMIT", "HistorianStore", "open_historian_store"]

DEFAULT_HISTORY_LIMIT = 10_000


@runtime_checkable
class HistorianStore(Protocol):
    def write_batch(self, samples: Sequence[Sample], fence: FencingToken | None = None) -> int:
        """Store ``samples`` in one transaction; return how many were new.

        With ``fence``, the transaction first checks the token (``FencedOut``: nothing stored).
        """
        ...

    def history(
        self, tag: str, start_ms: int, end_ms: int, limit: int = DEFAULT_HISTORY_LIMIT
    ) -> list[Sample]:
        """Raw samples of ``tag`` in ``[start_ms, end_ms)``, oldest first, at most ``limit``.

        The returned samples carry the tag's stored datatype.
        """
        ...

    def aggregate(
        self, tag: str, start_ms: int, end_ms: int, bucket_ms: int
    ) -> list[HistoryBucket]:
        """Epoch-aligned buckets of ``tag`` over ``[start_ms, end_ms)``; empty ones omitted."""
        ...

    def tags(self) -> list[TagInfo]:
        """Every known tag, ordered by path (``sample_count`` is not computed: use count())."""
        ...

    def count(self, tag: str | None = None) -> int:
        """Stored samples of ``tag``, or of all tags."""
        ...

    def latest(self, tag: str) -> Sample | None:
        """The sample of ``tag`` with the greatest timestamp."""
        ...

    def quarantine(self, tag: str, ts_ms: int, raw: str, reason: str) -> None:
        """Keep a sample that could not be stored, with the reason."""
        ...

    def quarantined(self) -> list[QuarantinedSample]:
        """Every quarantined sample, oldest first."""
        ...

    def close(self) -> None:
        """Release connections. The store is not used afterwards."""
        ...


def open_historian_store(url: str) -> HistorianStore:
    """The store for a SQLAlchemy URL (``sqlite:///...``, ``postgresql[+psycopg]://...``).

    The schema must exist: run :func:`andon.storage.migrate.upgrade_database` first.
    """
    from andon.storage.engine import normalize_url

    backend = normalize_url(url).get_backend_name()
    if backend == "sqlite":
        from andon.storage.sqlite import SqliteHistorianStore

        return SqliteHistorianStore(url)
    if backend == "postgresql":
        from andon.storage.postgresql import PostgresHistorianStore

        return PostgresHistorianStore(url)
    raise ValueError(f"no historian store for database backend {backend!r}")
