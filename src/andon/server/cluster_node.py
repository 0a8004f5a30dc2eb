"""``ClusterNode``: a server as one node of a redundant cluster (DESIGN.md §5, README Redundancy).

Built by ``MesServer`` only when ``[[cluster.domains]]`` are configured; without them the server
runs exactly as a single node. Per domain of control this node is a candidate of, it keeps a
``LeaseRunner`` lease, a fenced historian writer (``cluster_historian``) and a primary-host
session (``cluster_primary``); a ``LeaseWatchdog`` kills the process if the lease loop stalls.

A domain is *passive* (hot standby: the node's own Sparkplug session feeds live values, the MES
and the spool, nothing is written, nothing is sent to equipment), *promoting* or *active*.

* Promotion (lease granted, ``on_promote``): the historian writer gets the new epoch's token at
  once and drains the spool (inserts are idempotent: what the old leader wrote is not written
  twice); then, under the MES lock, the domain's derived-write gate opens, the domain's MES
  builders are emptied and re-derived from what the database holds (``recover``); then the
  primary-host sessions open (STATE online with a new timestamp: the edges re-birth and flush
  their store-and-forward backlog) and the domain is active. These steps run on the promotion
  thread; each checks that the lease is still this epoch's.
* Demotion (``on_demote``, on the lease loop, before the lease is released): writes stop first
  (the fence already returns None, the gate closes, commands and API writes are refused), then
  the primary-host sessions publish STATE offline and close: no overlap with the next leader.

The arbiter must be the historian database itself: the fence of every write reads the lease in
the same transaction, which cannot span two databases (``ClusterNode`` refuses to start
otherwise).
"""

from __future__ import annotations

import functools
import logging
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from andon.cluster.model import FencingToken
from andon.cluster.plan import ClusterPlan, DomainPlan
from andon.cluster.runner import LeaseRunner
from andon.cluster.watchdog import LeaseWatchdog
from andon.domain import AssetPath
from andon.server.cluster_errors import NotLeaderError, NotLeaderTagWriteError
from andon.server.cluster_historian import DomainHistorian
from andon.server.cluster_primary import PrimaryHost, primary_client_id
from andon.server.cluster_promotion import Promoter
from andon.server.cluster_routing import DomainRouter
from andon.server.cluster_status import ClusterView, DomainReport, refusal_message, status_document
from andon.server.cluster_upkeep import (
    ClusterUpkeep,
    PromotionRebirths,
    RebirthLimiter,
    wall_ms,
)
from andon.server.host_connection import BrokerClientFactory, HostConnection
from andon.server.mes_service import MesService
from andon.server.uns import UnsPublisher
from andon.settings import ServerSettings
from andon.storage.cluster_arbiter import SqlArbiter, open_sql_arbiter
from andon.storage.engine import normalize_url
from andon.storage.historian_writer import HistorianWriter
from andon.storage.store import HistorianStore

__all__ = ["ClusterNode", "NotLeaderError", "NotLeaderTagWriteError", "check_arbiter_is_historian"]

log = logging.getLogger(__name__)

PASSIVE, PROMOTING, ACTIVE = "passive", "promoting", "active"


def check_arbiter_is_historian(settings: ServerSettings) -> None:
    """ValueError unless the leases live in the historian database (see the module)."""
    arbiter = settings.cluster.arbiter(settings.database_url)
    mine = normalize_url(settings.database_url).render_as_string(hide_password=False)
    theirs = normalize_url(arbiter).render_as_string(hide_password=False)
    if mine != theirs:
        raise ValueError(
            "cluster.arbiter_url must be the historian database (database_url) when "
            "[[cluster.domains]] are configured: every fenced write checks the lease in its "
            "own transaction, which cannot reach a second database (leave arbiter_url unset)"
        )


@dataclass(slots=True)
class _Domain:
    plan: DomainPlan
    role: str = PASSIVE
    epoch: int | None = None
    since_ms: int | None = None
    watermark_ms: int | None = None
    primary: PrimaryHost | None = None
    rebirths: PromotionRebirths | None = None


class ClusterNode:
    def __init__(
        self,
        settings: ServerSettings,
        *,
        client_factory: BrokerClientFactory,
        arbiter: SqlArbiter | None = None,
    ) -> None:
        check_arbiter_is_historian(settings)
        self.settings = settings
        self.plan: ClusterPlan = settings.cluster.plan(settings.host_id)
        self.node_id = self.plan.node_id
        self.router = DomainRouter(self.plan.domains)
        self.arbiter = arbiter or open_sql_arbiter(
            settings.cluster.arbiter(settings.database_url), self.plan.preferences()
        )
        self._lock = threading.Lock()
        led = {d.name for d in self.plan.led_domains()}
        self._domains = {d.name: _Domain(d, since_ms=wall_ms()) for d in self.plan.domains}
        brokers = (settings.mqtt, *settings.extra_brokers)
        for name, state in self._domains.items():
            if name in led:
                host_id = state.plan.host_id
                state.primary = PrimaryHost(
                    host_id,
                    [b.endpoint(client_id=primary_client_id(host_id)) for b in brokers],
                    client_factory,
                    may_lead=functools.partial(self._has_lease, name),
                )
        self.view = ClusterView()
        self.rebirths = RebirthLimiter(settings.cluster.promotion_rebirths_per_s)
        # The lease loop and its watchdog are made at start(): the runner's hold-off (nodes
        # started together see each other's heartbeats before anyone takes a lease) counts
        # from its construction.
        self.runner: LeaseRunner | None = None
        self.watchdog: LeaseWatchdog | None = None
        self.upkeep = ClusterUpkeep(self, self.plan.timing.renew_interval_ms / 1000)
        self.promoter = Promoter(self)
        self.historian: DomainHistorian  # built by build_historian()
        self.hosts: Sequence[HostConnection] = ()
        self.mes: MesService | None = None
        self.store: HistorianStore | None = None
        self._uns: UnsPublisher | None = None

    # -- wiring (MesServer) ------------------------------------------------------------------

    @property
    def own_host_id(self) -> str:
        """The Sparkplug host ID of this node's own (secondary) session: its node ID."""
        return self.node_id

    @property
    def led_domain_names(self) -> tuple[str, ...]:
        return tuple(d for d, s in self._domains.items() if s.primary is not None)

    def build_historian(
        self, store: HistorianStore, spool_path: Path, make: Callable[..., HistorianWriter]
    ) -> DomainHistorian:
        """A fenced writer per domain this node may lead, each with its own spool file (nodes
        on one host must not share one: the file name carries the node and the domain)."""
        writers = {
            domain: make(
                store,
                spool_path=spool_path.with_name(f"{spool_path.name}.{self.node_id}.{domain}"),
                fence=functools.partial(self.token, domain),
            )
            for domain in self.led_domain_names
        }
        self.historian = DomainHistorian(
            writers,
            self.router,
            writable=self._has_lease,
            refusal=self.refusal,
        )
        return self.historian

    def attach(
        self,
        *,
        hosts: Sequence[HostConnection],
        store: HistorianStore,
        mes: MesService | None,
        uns: UnsPublisher | None,
    ) -> None:
        self.hosts, self.store, self.mes, self._uns = hosts, store, mes, uns

    # -- what the rest of the server asks --------------------------------------------------------

    def token(self, domain: str) -> FencingToken | None:
        """The fencing token of a write for ``domain`` now (None: this node may not write)."""
        runner = self.runner
        return None if runner is None else runner.token(domain)

    def _has_lease(self, domain: str) -> bool:
        return self.token(domain) is not None

    def leads(self, domain: str) -> bool:
        """Active (promotion done) and the lease valid by this node's clock, now."""
        state = self._domains.get(domain)
        return state is not None and state.role == ACTIVE and self.token(domain) is not None

    def role_of(self, domain: str) -> str:
        return self._domains[domain].role

    def epoch_of(self, domain: str) -> int | None:
        return self._domains[domain].epoch

    def roles(self) -> dict[str, str]:
        return {name: state.role for name, state in self._domains.items()}

    def set_watermark(self, domain: str, mark_ms: int) -> None:
        with self._lock:
            self._domains[domain].watermark_ms = mark_ms

    def rebirth_plan(self, domain: str) -> PromotionRebirths | None:
        return self._domains[domain].rebirths

    def command_allowed(self, topic: str) -> bool:
        """The host connections' gate: NCMD/DCMD only to edges of the domains led now."""
        domain = self.router.domain_of_command(topic)
        return domain is None or self.leads(domain)

    def rebirth_allowed(self, group_id: str, edge_node_id: str) -> bool:
        """The host session's gate on rebirth requests: only to the edges of domains led now
        (R-14), and within the node's rebirth rate (R-15; refused ones are asked again after
        the session's per-node debounce)."""
        return self.leads(self.router.domain_of_edge(group_id, edge_node_id)) and (
            self.rebirths.take()
        )

    def publishes_asset(self, asset: AssetPath) -> bool:
        return self.leads(self.router.domain_of_asset(str(asset)))

    def refusal(self, domain: str) -> str:
        return refusal_message(
            self.node_id, domain, self.role_of(domain), self.view, self.settings.cluster.api_urls
        )

    def write_refusal(self, asset: str | None, tag: str | None) -> str | None:
        """Why an API or UI write may not be made here (None: it may). A write naming an asset
        or a tag needs its domain led by this node; any other write needs one led domain."""
        if tag is not None:
            domain = self.router.domain_of_tag(tag)
        elif asset is not None:
            domain = self.router.domain_of_asset(asset.strip("/"))
        else:
            if any(self.leads(d) for d in self._domains):
                return None
            return "; ".join(self.refusal(d) for d in self._domains)
        return None if self.leads(domain) else self.refusal(domain)

    def tag_epoch(self, path: str) -> int:
        """The fence epoch a command to the tag at ``path`` carries; NotLeaderTagWriteError if
        another node commands its edge now."""
        domain = self.router.domain_of_tag(path)
        token = self.token(domain)
        if token is None or not self.leads(domain):
            raise NotLeaderTagWriteError(self.refusal(domain))
        return token.epoch

    def heartbeat_info(self) -> Mapping[str, Any]:
        """Added to every heartbeat (runs on the lease loop: no IO)."""
        s = self.settings
        host = s.http_host if s.http_host not in ("0.0.0.0", "::", "") else socket.gethostname()
        with self._lock:
            return {
                "api_url": f"http://{host}:{s.http_port}",
                "states": {name: state.role for name, state in self._domains.items()},
                "watermarks": {
                    name: state.watermark_ms
                    for name, state in self._domains.items()
                    if state.role == ACTIVE and state.watermark_ms is not None
                },
            }

    def status(self) -> dict[str, Any]:
        stats = self.historian.domain_stats()
        reports = []
        with self._lock:
            for name, state in self._domains.items():
                writer = stats.get(name)
                reports.append(
                    DomainReport(
                        domain=name,
                        host_id=state.plan.host_id,
                        candidates=state.plan.candidates,
                        role=state.role,
                        since_ms=state.since_ms,
                        epoch=state.epoch,
                        primary_online=state.primary is not None and state.primary.online,
                        spool_samples=None if writer is None else writer.spool_samples,
                        watermark_ms=state.watermark_ms if state.role == ACTIVE else None,
                    )
                )
        return status_document(
            self.node_id,
            reports,
            self.view,
            ttl_ms=self.plan.timing.ttl_ms,
            api_urls=self.settings.cluster.api_urls,
            wall_now_ms=wall_ms(),
        )

    def health(self) -> dict[str, Any]:
        """The ``cluster`` component of ``/api/v1/health``: this node's roles."""
        with self._lock:
            domains = {
                name: {"role": s.role, "since_ms": s.since_ms, "epoch": s.epoch}
                for name, s in self._domains.items()
            }
        return {
            "ok": self.view.error is None,
            "node": self.node_id,
            "roles": {name: d["role"] for name, d in domains.items()},
            "domains": domains,
            "arbiter_error": self.view.error,
        }

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self.promoter.start()
        self.upkeep.read_view()
        timing = self.plan.timing
        self.runner = LeaseRunner(
            self.arbiter,
            self.plan,
            on_promote=self._on_promote,
            on_demote=self._on_demote,
            info=self.heartbeat_info,
            holdoff_ms=timing.ttl_ms,  # nodes started up to a ttl apart count as "together"
        )
        runner = self.runner
        self.watchdog = LeaseWatchdog(
            lambda: runner.last_progress, self.plan.watchdog_stall_ms / 1000
        )
        self.runner.start()
        self.watchdog.start()
        self.upkeep.start()
        log.info("cluster node %s started: candidate for %s", self.node_id,
                 ", ".join(self.led_domain_names) or "no domain")  # fmt: skip

    def stop(self) -> None:
        """Hand over: demote and release every domain led (STATE offline first), then stop."""
        self.upkeep.stop()
        if self.runner is not None:
            self.runner.stop()  # demotes (on_demote) and releases
        if self.watchdog is not None:
            self.watchdog.stop()
        self.promoter.stop()

    def close(self) -> None:
        self.arbiter.close()

    # -- lease callbacks (lease loop thread: quick) -------------------------------------------

    def _on_promote(self, domain: str, epoch: int) -> None:
        with self._lock:
            state = self._domains[domain]
            state.role, state.epoch, state.since_ms = PROMOTING, epoch, wall_ms()
            state.watermark_ms = None
        self.promoter.request(domain, epoch)

    def _on_demote(self, domain: str, reason: str) -> None:
        with self._lock:
            state = self._domains[domain]
            state.role, state.epoch, state.since_ms = PASSIVE, None, wall_ms()
            state.rebirths = None
            self.historian.gate.close(domain)
        if state.primary is not None:
            state.primary.close(timeout_s=0.4)  # STATE offline before the lease is released

    # -- promotion steps (called by the promotion thread, ``cluster_promotion``) ----------------

    def promoting(self, domain: str, epoch: int) -> bool:
        """Still the promotion of ``epoch`` (not demoted, not superseded)?"""
        state = self._domains[domain]
        return state.role == PROMOTING and state.epoch == epoch

    def open_gate(self, domain: str, epoch: int) -> bool:
        """Open the domain's derived-write gate if still promoting ``epoch``."""
        with self._lock:
            if not self.promoting(domain, epoch):
                return False
            self.historian.gate.open(domain)
            return True

    def finish_promotion(self, domain: str, epoch: int) -> bool:
        """Active from now: the primary-host sessions open (STATE online comes with them)."""
        with self._lock:
            if not self.promoting(domain, epoch):
                return False
            state = self._domains[domain]
            now = wall_ms()
            state.role, state.since_ms = ACTIVE, now
            if self.mes is None:
                self.historian.gate.open(domain)
            state.rebirths = PromotionRebirths(
                now,
                self.settings.cluster.promotion_rebirth_delay_ms,
                in_domain=lambda g, n: self.router.domain_of_edge(g, n) == domain,
            )
            if state.primary is not None:
                state.primary.open()
        if self._uns is not None:
            self._uns.republish_all()
        return True
