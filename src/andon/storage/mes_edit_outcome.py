"""How a manual MES edit's own transaction ended, told to the request that waits for it.

A manual edit (a ``MesChanges`` carrying hooks: the edit's records and its audit entry) goes to
the database through the historian writer like every derived write, but it is never merged with
ingest's changes: ``MesWrite`` keeps it apart and writes it in a transaction of its own, in order
with the changes before and after it (``write_in_order``). So an edit the database refuses takes
nothing else with it, and the request learns whether its edit committed from the
``EditOutcome`` among its hooks -- not from a flush of the writer, which also returns once a
refused write has been dropped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from andon.domain import DomainError
from andon.storage.historian_writer import is_transient_error
from andon.storage.writer_fence import WriterFence

if TYPE_CHECKING:
    import sqlalchemy as sa

    from andon.storage.mes import MesChanges

__all__ = ["EditNotStoredError", "EditOutcome", "outcomes_of", "write_in_order"]

log = logging.getLogger("andon.storage.historian_writer")


class EditNotStoredError(DomainError):
    """The edit's transaction did not commit (this node no longer leads the asset's domain):
    nothing of it is stored."""


class EditOutcome:
    """Put among a manual edit's hooks; ``MesWrite`` tells it how the edit's transaction ended.

    It is a hook (called inside the transaction, writing nothing) so that it travels with the
    edit's own hooks wherever the changes go (a cluster splits changes by domain; hooks stay
    together)."""

    def __init__(self) -> None:
        self._settled = threading.Event()
        self._error: BaseException | None = None

    def __call__(self, connection: sa.Connection) -> None:
        """Inside the edit's transaction: nothing to write."""

    def stored(self) -> None:
        self._settled.set()

    def refused(self, error: BaseException) -> None:
        if not self._settled.is_set():
            self._error = error
            self._settled.set()

    def wait(self, timeout: float | None) -> bool:
        """True once the transaction committed or was refused (see ``error``)."""
        return self._settled.wait(timeout)

    @property
    def settled(self) -> bool:
        return self._settled.is_set()

    @property
    def error(self) -> BaseException | None:
        """Why the edit was not stored (None: stored, or not settled yet)."""
        return self._error


def outcomes_of(changes: MesChanges) -> list[EditOutcome]:
    return [hook for hook in changes.hooks if isinstance(hook, EditOutcome)]


def write_in_order(write_one: Callable[[MesChanges], None], pending: list[MesChanges]) -> None:
    """Write each change set of ``pending`` in a transaction of its own, in order, removing it
    from the list once done: a retry after an error (the database down) goes on with the first
    set not written, and nothing is written twice (rollups are increments).

    A manual edit the database refuses for what it is (not because the database is down) is
    told to its waiter and skipped; the sets after it are still written. When this node may not
    write (the fence), every edit still pending is told so and the error goes to the writer,
    which discards derived writes then."""
    while pending:
        changes = pending[0]
        edit = outcomes_of(changes)
        try:
            write_one(changes)
        except Exception as error:
            if not edit or is_transient_error(error):
                raise
            if WriterFence.stops(error):
                refusal = EditNotStoredError(
                    "this node no longer leads the asset's domain; the edit was not stored"
                )
                for waiting in pending:
                    for outcome in outcomes_of(waiting):
                        outcome.refused(refusal)
                raise
            log.warning("a manual MES edit was refused, nothing of it stored: %r", error)
            for outcome in edit:
                outcome.refused(error)
        else:
            for outcome in edit:
                outcome.stored()
        del pending[0]
