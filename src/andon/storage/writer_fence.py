"""The historian writer's fence: write only while this node leads, hold everything otherwise.

The writer asks ``fence()`` before every transaction. A token: the transaction checks it
(``check_fence``) and commits only if the lease still carries it. None (passive): nothing is
written. Either way, when the writer may not write, it behaves as during a database outage and
reuses that path: samples go to its disk spool, in order, and wait there until the fence gives a
token again, then drain (inserts are idempotent on (tag, ts), so what the leader of the time
already wrote is not duplicated). A batch refused with ``FencedOut`` has none of its samples
written (new tags it created under the fence just before are kept; see
``SqlHistorianStore._resolve_tags``) and stays spooled the same way.

Derived MES writes are different: rollups are increments, so writing what a passive node derived
on top of what the leader derived from the same samples would count twice. They are discarded
(counted and logged); a node that becomes the leader re-derives from the history instead
(``MesService.recover``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from andon.cluster.model import FencedOut, FencingToken

__all__ = ["NotLeader", "WriterFence"]

log = logging.getLogger("andon.storage.historian_writer")


class NotLeader(Exception):
    """The fence gave no token: this node may not write now."""


class WriterFence:
    """Used by the writer thread only (the counters are read without a lock: plain ints)."""

    def __init__(self, fence: Callable[[], FencingToken | None], poll_s: float = 0.1) -> None:
        self._fence = fence
        self.poll_s = poll_s
        self.holding = False  # writes are held back: passive or fenced out
        self.fenced_out_total = 0  # transactions refused by the database's fence check
        self.derived_discarded_total = 0  # derived rows not written: not the leader

    def token(self) -> FencingToken:
        token = self._fence()
        if token is None:
            raise NotLeader("this node does not lead the domain now")
        return token

    def may_write(self) -> bool:
        return self._fence() is not None

    @staticmethod
    def stops(error: BaseException) -> bool:
        """The error says "not the leader", not "database down" or "bad data"."""
        return isinstance(error, NotLeader | FencedOut)

    def hold(self, error: BaseException) -> None:
        if isinstance(error, FencedOut):
            self.fenced_out_total += 1
            log.error("historian write refused, data kept in the spool: %s", error)
        if not self.holding:
            self.holding = True
            log.warning("historian writer holding writes (spooling) while not the leader")

    def resume(self) -> None:
        if self.holding:
            self.holding = False
            log.warning("historian writer leads again: writing, spool first")

    def discard_derived(self, error: BaseException, rows: int) -> None:
        self.derived_discarded_total += rows
        log.info("discarded %d derived rows (re-derived by the leader): %s", rows, error)
        self.hold(error)
