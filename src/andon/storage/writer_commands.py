"""The historian writer's commands, its statistics, and how it tells an outage from bad data.

Kept apart from the writer's thread logic (``andon.storage.historian_writer``), which re-exports
every name here.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import exc as sa_exc

from andon.cluster.model import FencingToken
from andon.storage.types import Sample

__all__ = [
    "DerivedWrite",
    "Flush",
    "HistorianWriterStats",
    "Stop",
    "WriteDerived",
    "WriteSamples",
    "WriterCommand",
    "is_transient_error",
]


@dataclass(frozen=True, slots=True)
class WriteSamples:
    samples: Sequence[Sample]


@dataclass(frozen=True, slots=True)
class Flush:
    """Set ``done`` once every sample queued before this command is committed."""

    done: threading.Event


@dataclass(frozen=True, slots=True)
class Stop:
    """Drain everything queued before this command, then end the thread."""


class DerivedWrite(Protocol):
    """Records derived from samples, written in one transaction by ``write`` (which raises the
    store's errors: a transient one is retried). ``merge`` folds a newer write into this one."""

    @property
    def rows(self) -> int: ...

    def merge(self, newer: Any) -> None: ...

    def write(self, fence: FencingToken | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class WriteDerived:
    write: DerivedWrite


WriterCommand = WriteSamples | WriteDerived | Flush | Stop


@dataclass(frozen=True, slots=True)
class HistorianWriterStats:
    queued: int  # samples in memory, not yet committed or spooled (includes the batch in flight)
    committed_total: int  # samples in committed batches (duplicates included)
    inserted_total: int  # new rows (duplicates of stored samples excluded)
    batches_total: int
    last_batch_size: int
    last_batch_seconds: float
    failures_total: int  # failed write attempts, transient or not
    quarantined_total: int
    database_up: bool
    spool_batches: int = 0
    spool_samples: int = 0
    spool_bytes: int = 0
    spooling: bool = False  # the spool holds batches: new samples wait behind them
    derived_queued: int = 0  # derived rows (MES) not yet committed
    derived_dropped_total: int = 0  # derived rows refused by the database as invalid (a bug)
    fenced: bool = False  # not the leader (passive or fenced out): writes held, samples spooled
    fenced_out_total: int = 0  # transactions refused by the fence check (nothing committed)
    derived_discarded_total: int = 0  # derived rows not written because not the leader


def is_transient_error(error: BaseException) -> bool:
    """Errors that say "the database is unreachable or busy", not "this data is bad"."""
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(
        error,
        sa_exc.OperationalError
        | sa_exc.InterfaceError
        | sa_exc.DisconnectionError
        | sa_exc.TimeoutError
        | ConnectionError
        | TimeoutError,
    )
