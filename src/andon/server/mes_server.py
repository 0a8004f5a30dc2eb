"""``MesServer``: the root object of ``andon server``. Reading the constructor shows the runtime."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from andon.api import ApiContext, create_app
from andon.server._mes_window import paged_history
from andon.server.auth import UserService
from andon.server.cluster_historian import DomainHistorian
from andon.server.cluster_node import ClusterNode
from andon.server.edge_registry import EdgeRegistry
from andon.server.forwarding import Forwarding, enable_site_outbox
from andon.server.host_connection import BrokerClientFactory, HostConnection
from andon.server.http import HttpServer
from andon.server.ingest import SparkplugIngest
from andon.server.live_events import LiveEvents
from andon.server.live_tags import LiveTagTable
from andon.server.mes_limits import MesLimits
from andon.server.mes_queries import MesQueries
from andon.server.mes_recovery import recover
from andon.server.mes_service import MesService
from andon.server.metrics import ServerMetrics
from andon.server.plant_editor import PlantEditor
from andon.server.plant_file import load_plant
from andon.server.tag_writes import BeforeSend, EpochProvider, TagWriteOutcome, TagWriter
from andon.server.uns import UnsPublisher
from andon.settings import ServerSettings
from andon.sparkplug.host import HostApplicationSession
from andon.storage.historian_writer import HistorianWriter
from andon.storage.insert_process import InsertProcessStore
from andon.storage.mes import MesRepository
from andon.storage.mes_runs import RunRepository
from andon.storage.migrate import upgrade_database
from andon.storage.store import HistorianStore, open_historian_store
from andon.storage.types import Sample
from andon.storage.users import UserRepository

__all__ = ["MesServer", "historian_spool_path"]

log = logging.getLogger(__name__)


def historian_spool_path(settings: ServerSettings) -> Path:
    """Where the historian spools during a database outage: one file per database."""
    if settings.historian_spool_path is not None:
        path = settings.historian_spool_path
    elif settings.database_url.startswith("sqlite:///"):
        path = Path(settings.database_url.removeprefix("sqlite:///") + ".historian-spool")
    else:
        tail = settings.database_url.rsplit("@", 1)[-1]
        name = "".join(c if c.isalnum() else "-" for c in tail).strip("-")
        path = Path("andon-data") / f"historian-spool-{name}.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _default_client_factory() -> BrokerClientFactory:
    from andon.mqtt.paho_client import PahoBrokerClient

    return PahoBrokerClient


class MesServer:
    def __init__(
        self,
        settings: ServerSettings,
        *,
        client_factory: BrokerClientFactory | None = None,
        serve_http: bool = True,
    ) -> None:
        self.settings = settings
        upgrade_database(settings.database_url)
        self.store = open_historian_store(settings.database_url)
        factory = client_factory or _default_client_factory()
        # Redundancy (DESIGN.md §5): with [[cluster.domains]] this server is one node of a
        # cluster -- leases, fenced writers per domain, a primary host per domain led
        # (andon.server.cluster_node). Without them: a single node, as always.
        self.cluster = (
            ClusterNode(settings, client_factory=factory) if settings.cluster.domains else None
        )
        # Each writer's inserts run in a child process of their own (a second core for the
        # database work, andon.storage.insert_process), unless historian_insert_process is off.
        self.insert_processes: list[InsertProcessStore] = []
        make_writer = functools.partial(
            self._make_writer,
            queue_capacity=settings.historian_queue_capacity,
            max_batch=settings.historian_max_batch,
            derived_max_delay_s=settings.mes_write_delay_s,
            spool_max_bytes=int(settings.historian_spool_max_mb * 2**20),
        )
        self.historian: HistorianWriter | DomainHistorian = (
            make_writer(self.store, spool_path=historian_spool_path(settings))
            if self.cluster is None
            else self.cluster.build_historian(
                self.store, historian_spool_path(settings), make_writer
            )
        )
        # MES: the plant file is checked before anything starts (a bad file stops the server).
        self.mes: MesService | None = None
        self.mes_queries: MesQueries | None = None
        if settings.plant_file is not None:
            self.mes_repository = MesRepository(settings.database_url)
            enable_site_outbox(settings, self.mes_repository)  # [outbox]: before load()
            self.mes = MesService(
                load_plant(settings.plant_file),
                self.mes_repository,
                RunRepository(self.mes_repository.engine),
                self.historian,
                history=functools.partial(paged_history, self.store),
                horizon_ms=round(settings.mes_horizon_hours * 3_600_000),
                limits=MesLimits.of(settings),
            )
            self.mes.load()
            self.mes_queries = MesQueries(self.mes)
        self.live_tags = LiveTagTable()
        # Web clients get tag and state changes pushed (GET /api/v1/live), never slowing ingest.
        self.live_events = LiveEvents(
            self.live_tags, self.mes_queries, client_capacity=settings.live_client_queue
        )
        if self.mes is not None:
            self.mes.edit_listeners.append(self.live_events.asset_changed)
        self.edges = EdgeRegistry()
        self.ingest = SparkplugIngest(
            self.live_tags,
            self.edges,
            self.historian,
            queue_capacity=settings.ingest_queue_capacity,
            max_future_ms=round(settings.max_clock_skew_s * 1000),
            derive=None if self.mes is None else self._derive,
            gather_s=settings.ingest_gather_ms / 1000,
        )
        # One connection, with its own session and STATE timestamp, per broker (H-07). A
        # cluster node's own session is a secondary host named after the node (every node
        # receives everything); it commands only the edges of the domains it leads.
        own_host_id = settings.host_id if self.cluster is None else self.cluster.own_host_id
        self.hosts = [
            HostConnection(
                mqtt.endpoint(client_id=f"andon-host-{own_host_id}"),
                HostApplicationSession(
                    own_host_id,
                    rebirth_debounce_ms=settings.rebirth_debounce_ms,
                    reorder_timeout_ms=settings.reorder_timeout_ms,
                    state_v4_mode=settings.state_v4_mode,
                    namespace_filter=settings.sparkplug_filter,
                    rebirth_allowed=None if self.cluster is None else self.cluster.rebirth_allowed,
                ),
                on_message=functools.partial(self.ingest.offer, link=index),
                client_factory=factory,
                command_gate=None if self.cluster is None else self.cluster.command_allowed,
            )
            for index, mqtt in enumerate((settings.mqtt, *settings.extra_brokers))
        ]
        self.ingest.attach(self.hosts)
        self.host = self.hosts[0]
        # The UNS mirror of the MES (DESIGN §4.6): retained JSON per asset on every broker.
        self.uns: UnsPublisher | None = None
        if self.mes_queries is not None and settings.uns_enabled:
            self.uns = UnsPublisher(
                self.mes_queries,
                self.hosts,
                flush=self.historian.flush,
                min_interval_s=settings.uns_min_interval_s,
                may_publish=None if self.cluster is None else self.cluster.publishes_asset,
            )
            for host in self.hosts:
                host.online_listeners.append(self.uns.republish_all)
            if self.mes is not None:
                self.mes.edit_listeners.append(self.uns.edited)  # edits republish at once
        self.session = self.host.session
        # Site -> enterprise forwarding (README "Sites and enterprise"): the outbox dispatcher
        # with [outbox], the consumer of the sites' feeds with [enterprise]. may_publish=None:
        # this node always dispatches (a cluster passes its leadership gate here).
        self.forwarding = Forwarding(
            settings,
            mes_repository=self.mes_repository if self.mes is not None else None,
            own_host_id=own_host_id,
            client_factory=factory,
            # One site outbox, one publisher: the leader of the first domain (R-05: a paused or
            # demoted node's dispatcher stops before its lease could have expired).
            may_publish=(
                None
                if self.cluster is None
                else functools.partial(self.cluster.leads, settings.cluster.domains[0].name)
            ),
        )
        if self.cluster is not None:
            self.cluster.attach(hosts=self.hosts, store=self.store, mes=self.mes, uns=self.uns)
        # Writes to equipment: checked against the births, sent as DCMD, answered by the edge.
        self.tag_writer = TagWriter(
            self.hosts, self.live_tags, timeout_s=settings.tag_write_timeout_s
        )
        self.metrics = ServerMetrics(self)
        self.users = UserService(
            UserRepository(settings.database_url),
            session_ttl_ms=round(settings.session_ttl_hours * 3_600_000),
            token_ttl_ms=round(settings.token_ttl_days * 86_400_000),
        )
        if settings.initial_admin_password is not None and self.users.ensure_initial_admin(
            settings.initial_admin_password.get_secret_value()
        ):
            log.info("created user admin from initial_admin_password")
        # The admin's editor of the plant file: a saved file takes effect at the next start (the
        # running model's hash tells the admin page when the file on disk differs from it).
        self.plant_editor: PlantEditor | None = None
        if self.mes is not None and settings.plant_file is not None:
            self.plant_editor = PlantEditor(
                settings.plant_file,
                self.mes.plant.sha256,
                self.users.audit,
                refusal=None
                if self.cluster is None
                else functools.partial(self.cluster.write_refusal, None, None),
            )
        self.api = create_app(
            ApiContext(
                live_tags=self.live_tags,
                history=self.store,
                edges=self.edges,
                health=self.health,
                metrics_text=self.metrics.render,
                users=self.users,
                metrics_require_login=settings.metrics_require_login,
                mes=self.mes_queries,
                live=self.live_events,
                write_tag=self.write_tag,
                cluster_status=None if self.cluster is None else self.cluster.status,
                write_refusal=None if self.cluster is None else self.cluster.write_refusal,
                enterprise=self.forwarding.enterprise_records,
                plant_editor=self.plant_editor,
            )
        )
        self.http = (
            HttpServer(self.api, settings.http_host, settings.http_port) if serve_http else None
        )

    def start(self) -> None:
        self.historian.start()
        if self.mes is not None:
            recover(self.mes, self.store, time.time_ns() // 1_000_000)
        if self.uns is not None:
            self.uns.start()
        self.ingest.start()
        for host in self.hosts:
            host.start()
        self.forwarding.start()
        if self.http is not None:
            self.http.start()
        if self.cluster is not None:
            self.cluster.start()  # passive until a lease is granted (never starts active)
        log.info("server %s started", self.settings.host_id)

    def _make_writer(self, store: HistorianStore, **options: Any) -> HistorianWriter:
        if self.settings.historian_insert_process:
            inserts = InsertProcessStore(store, self.settings.database_url)
            self.insert_processes.append(inserts)
            store = inserts
        return HistorianWriter(store, **options)

    def stop(self) -> None:
        """Stop taking messages, then drain everything received into the database."""
        if self.cluster is not None:
            self.cluster.stop()  # hand over first: STATE offline, release (the rest spools)
        self.live_events.close()  # ends the open event streams, so the web server can stop
        if self.http is not None:
            self.http.stop()
        if self.uns is not None:
            self.uns.stop()
        for host in self.hosts:
            host.stop()
        self.ingest.stop()
        if not self.historian.stop(timeout=60.0):
            log.error("the historian could not write everything before stopping (see above)")
        self.forwarding.stop()  # what is not acknowledged stays in the outbox for next time
        for inserts in self.insert_processes:
            inserts.close()
        self.store.close()
        if self.mes is not None:
            self.mes_repository.close()
        self.users.repository.close()
        if self.cluster is not None:
            self.cluster.close()
        log.info("server %s stopped", self.settings.host_id)

    def _derive(self, samples: Sequence[Sample]) -> None:
        assert self.mes is not None
        assets = self.mes.offer(samples)
        if self.uns is not None and assets:
            self.uns.changed(assets)

    def write_tag(
        self,
        path: str,
        value: object,
        *,
        epoch_provider: EpochProvider | None = None,
        before_send: BeforeSend | None = None,
    ) -> TagWriteOutcome:
        """Write ``value`` to the tag at ``path`` (see ``andon.server.tag_writes``).

        ``epoch_provider`` gives the fence epoch commands carry once a cluster owns the asset;
        without one, commands carry none. A cluster node writes only to the edges of domains it
        leads, with that domain's epoch (``NotLeaderTagWriteError`` otherwise).
        """
        if self.cluster is not None and epoch_provider is None:
            epoch = self.cluster.tag_epoch(path)
            epoch_provider = functools.partial(int, epoch)
        return self.tag_writer.write(
            path, value, epoch_provider=epoch_provider, before_send=before_send
        )

    def health(self) -> dict[str, dict[str, Any]]:
        writer = self.historian.stats()
        components: dict[str, dict[str, Any]] = {
            "mqtt": {
                "ok": all(host.online for host in self.hosts),
                "brokers": {host.endpoint.address: host.online for host in self.hosts},
                "host_id": self.session.host_id,
            },
            "database": {
                "ok": writer.database_up,
                "dialect": self.settings.database_url.split(":", 1)[0],
            },
            "historian": {
                "ok": writer.database_up,
                "queued": writer.queued,
                "committed_total": writer.committed_total,
                "spooled_samples": writer.spool_samples,
            },
            "ingest": {"ok": True, "queued": self.ingest.queue_depth},
        }
        if self.cluster is not None:
            components["cluster"] = self.cluster.health()  # this node's role per domain
        components.update(self.forwarding.health())  # outbox backlog, enterprise sources
        return components
