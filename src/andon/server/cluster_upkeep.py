"""A cluster node's periodic work, on its own thread (``ClusterUpkeep``), each round:

1. *View*: read the arbiter's leases and member heartbeats (the status page, the 409 messages
   and the watermarks below come from this copy).
2. *Watermark* (each domain this node leads): note the wall clock ``t``, then flush the domain's
   writer; once the flush returns, every sample this node received before ``t`` is committed,
   so ``t`` is the domain's new watermark, published in the next heartbeat. Cheap (no table,
   no extra transaction) and always true, whoever leads later.
3. *Trim* (each domain this node only stands by for): a passive node spools every sample of the
   domain (so a failover loses nothing the leader had not yet committed); it drops the spooled
   batches appended before ``watermark - passive_spool_margin_ms``. The margin covers the clock
   difference between the nodes and how far the leader's ingest may lag behind this node's;
   a lag beyond it is covered by the edges' rolling buffer, which they re-send after the
   re-birth a failover brings.
4. *Promotion rebirths* (checklist R-15): edges configured with the domain's Primary Host ID
   re-birth by themselves when the new leader's STATE comes online; the others are asked to
   (their rolling buffer is then re-sent). ``PromotionRebirths`` decides whom and when (not
   before a delay, each once); every rebirth request of the node, these and the host
   session's own (data before a birth, sequence gaps), passes one ``RebirthLimiter``: no
   request storm when a node takes over hundreds of edges.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from andon.cluster.model import ArbiterError
from andon.server.cluster_status import ClusterView, leader_watermark
from andon.sparkplug.edge_node import REBIRTH_METRIC
from andon.sparkplug.errors import PayloadError, SessionError
from andon.sparkplug.host_actions import EdgeNodeStats
from andon.sparkplug.model import DataType, Metric

if TYPE_CHECKING:
    from andon.server.cluster_node import ClusterNode

__all__ = ["ClusterUpkeep", "PromotionRebirths", "RebirthLimiter", "wall_ms"]

log = logging.getLogger(__name__)

#: How long a watermark flush may wait for the writer before the round moves on.
_FLUSH_WAIT_S = 0.5


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class RebirthLimiter:
    """At most ``per_second`` rebirth requests a second from this node, whatever asks (the
    host session's own requests and the promotion's): consecutive requests are at least
    ``1 / per_second`` apart (no burst). Thread-safe."""

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        if per_second <= 0:
            raise ValueError("the rebirth rate must be positive")
        self._spacing = 1.0 / per_second
        self._clock = clock
        self._last: float | None = None
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self._clock()
            if self._last is not None and now - self._last < self._spacing:
                return False
            self._last = now
            return True


@dataclass(slots=True)
class PromotionRebirths:
    """Which edge nodes of a newly led domain to ask for a rebirth (pure): those online whose
    last birth is older than the promotion, once ``delay_ms`` has passed, each once."""

    promoted_ms: int
    delay_ms: int
    in_domain: Callable[[str, str], bool]
    asked: set[tuple[str, str]] = field(default_factory=set)

    def due(self, now_ms: int, edges: Iterable[EdgeNodeStats]) -> list[tuple[str, str]]:
        if now_ms < self.promoted_ms + self.delay_ms:
            return []
        return sorted(
            {
                (e.group_id, e.edge_node_id)
                for e in edges
                if e.online
                and (e.last_birth_ms is None or e.last_birth_ms < self.promoted_ms)
                and (e.group_id, e.edge_node_id) not in self.asked
                and self.in_domain(e.group_id, e.edge_node_id)
            }
        )


class ClusterUpkeep:
    def __init__(self, node: ClusterNode, interval_s: float) -> None:
        self._node = node
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._trimmed_to: dict[str, int] = {}
        self.trimmed_samples_total = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cluster-upkeep", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.round()
            except Exception:  # a bug here must not end the upkeep (nor the node)
                log.exception("cluster upkeep round failed")

    def round(self) -> None:
        node = self._node
        view = self.read_view()
        for domain in node.led_domain_names:
            if node.leads(domain):
                self._record_watermark(domain)
                self._ask_rebirths(domain)
            elif node.role_of(domain) == "passive":
                self._trim(domain, view)

    def read_view(self) -> ClusterView:
        node = self._node
        try:
            now = node.arbiter.now_ms()
            leases = {lease.domain: lease for lease in node.arbiter.leases()}
            members = {member.node: member for member in node.arbiter.members()}
        except ArbiterError as error:
            view = ClusterView(
                node.view.now_ms, node.view.leases, node.view.members, node.view.read_at_ms,
                str(error),
            )  # fmt: skip
        else:
            view = ClusterView(now, leases, members, wall_ms())
        node.view = view
        return view

    def _record_watermark(self, domain: str) -> None:
        node = self._node
        writer = node.historian.writer(domain)
        epoch = node.epoch_of(domain)
        if writer is None or epoch is None:
            return
        mark = wall_ms()
        if writer.flush(_FLUSH_WAIT_S) and node.epoch_of(domain) == epoch:
            node.set_watermark(domain, mark)

    def _trim(self, domain: str, view: ClusterView) -> None:
        node = self._node
        writer = node.historian.writer(domain)
        mark = leader_watermark(view, domain)
        if writer is None or mark is None:
            return
        cut = mark - node.settings.cluster.passive_spool_margin_ms
        if cut <= self._trimmed_to.get(domain, 0):
            return
        dropped = writer.trim_spool(cut)
        self._trimmed_to[domain] = cut
        if dropped:
            self.trimmed_samples_total += dropped
            log.debug("passive spool of %s: dropped %d samples the leader has", domain, dropped)

    def _ask_rebirths(self, domain: str) -> None:
        node = self._node
        plan = node.rebirth_plan(domain)
        if plan is None:
            return
        now = wall_ms()
        edges: list[EdgeNodeStats] = []
        for link in node.hosts:
            with link.session_lock:
                edges.extend(link.session.edge_nodes())
        for group_id, edge_node_id in plan.due(now, edges):
            if not node.rebirths.take():
                return  # the rate limit: the rest in a later round
            plan.asked.add((group_id, edge_node_id))
            self._request_rebirth(group_id, edge_node_id, now)

    def _request_rebirth(self, group_id: str, edge_node_id: str, now_ms: int) -> None:
        rebirth = Metric(REBIRTH_METRIC, True, DataType.BOOLEAN, timestamp=now_ms)
        for link in self._node.hosts:
            if not link.online:
                continue
            try:
                with link.session_lock:
                    command = link.session.command(group_id, edge_node_id, None, [rebirth], now_ms)
            except (SessionError, PayloadError):
                continue  # not born on this broker connection
            log.info("asking %s/%s for a rebirth after the promotion", group_id, edge_node_id)
            link.publish(command)
            return
