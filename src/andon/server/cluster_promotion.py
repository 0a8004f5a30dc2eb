"""The promotion thread of a cluster node: a granted lease becomes an active domain, in order
(DESIGN.md §5; decisions in ``andon.server.cluster_node``):

1. the domain's historian spool is written with the new epoch's token (the writer has it from
   the moment the lease was granted; inserts are idempotent, so what the former leader already
   wrote is not written twice);
2. under the MES lock, with every sample received so far committed, the domain's derived-write
   gate opens, its assets' builders are emptied and re-derived from the database (``recover``):
   what this node derived while passive was never stored, and rollups are increments;
3. the primary-host sessions open: STATE online with a new timestamp, the edges re-birth and
   flush their store-and-forward backlog.

Each step first checks that the lease is still this promotion's epoch; a demotion meanwhile
ends the promotion (the demotion itself closed the gate and the sessions).
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import TYPE_CHECKING

from andon.server.cluster_upkeep import wall_ms
from andon.server.mes_recovery import recover
from andon.server.mes_service import MesUnavailableError

if TYPE_CHECKING:
    from andon.server.cluster_node import ClusterNode

__all__ = ["Promoter"]

log = logging.getLogger(__name__)

#: How long one wait for the spool to be written lasts before the lease is checked again.
_DRAIN_WAIT_S = 1.0


class Promoter:
    def __init__(self, node: ClusterNode) -> None:
        self._node = node
        self._requests: queue.Queue[tuple[str, int] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def request(self, domain: str, epoch: int) -> None:
        """Called on the lease loop: only queues (the steps may take seconds)."""
        self._requests.put((domain, epoch))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cluster-promote", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._requests.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._requests.get()
            if item is None:
                return
            domain, epoch = item
            try:
                self.promote(domain, epoch)
            except Exception:  # the domain stays promoting; the lease loop demotes if it must
                log.exception("promotion of %s (epoch %d) failed", domain, epoch)

    def promote(self, domain: str, epoch: int) -> bool:
        node = self._node
        started = wall_ms()
        writer = node.historian.writer(domain)
        while writer is not None and node.promoting(domain, epoch):
            if writer.flush(timeout=_DRAIN_WAIT_S):
                break
        drained = wall_ms()
        if node.mes is not None and not self._rederive(domain, epoch):
            return False
        if not node.finish_promotion(domain, epoch):
            return False
        log.warning(
            "node %s is active for domain %s (epoch %d) after %d ms (spool %d ms, MES %d ms)",
            node.node_id, domain, epoch, wall_ms() - started, drained - started,
            wall_ms() - drained,
        )  # fmt: skip
        return True

    def _rederive(self, domain: str, epoch: int) -> bool:
        node = self._node
        mes, store = node.mes, node.store
        assert mes is not None
        assert store is not None
        assets = [
            a for a in mes.plant.bound_assets if node.router.domain_of_asset(str(a)) == domain
        ]
        while node.promoting(domain, epoch):
            try:
                with mes.exclusive():  # every sample received so far is committed now
                    if not node.open_gate(domain, epoch):
                        return False
                    mes.forget(assets)
                    replayed = recover(mes, store, wall_ms(), assets=assets)
            except MesUnavailableError as error:
                log.warning("domain %s: re-deriving the MES waits for the database: %s",
                            domain, error)  # fmt: skip
                continue
            log.info("domain %s: MES re-derived (%d samples replayed)", domain, replayed)
            return True
        return False
