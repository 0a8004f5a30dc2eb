"""``MesServer``: the root object of ``andon server``. Reading the constructor shows the runtime."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from andon.api import ApiContext, create_app
from andon.server.auth import UserService
from andon.server.edge_registry import EdgeRegistry
from andon.server.host_connection import BrokerClientFactory, HostConnection
from andon.server.http import HttpServer
from andon.server.ingest import SparkplugIngest
from andon.server.live_tags import LiveTagTable
from andon.server.mes_queries import MesQueries
from andon.server.mes_recovery import recover
from andon.server.mes_service import MesService
from andon.server.metrics import ServerMetrics
from andon.server.plant_file import load_plant
from andon.server.uns import UnsPublisher
from andon.settings import ServerSettings
from andon.sparkplug.host import HostApplicationSession
from andon.storage.historian_writer import HistorianWriter
from andon.storage.mes import MesRepository
from andon.storage.mes_runs import RunRepository
from andon.storage.migrate import upgrade_database
from andon.storage.store import open_historian_store
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
        self.historian = HistorianWriter(
            self.store,
            queue_capacity=settings.historian_queue_capacity,
            max_batch=settings.historian_max_batch,
            spool_path=historian_spool_path(settings),
            spool_max_bytes=int(settings.historian_spool_max_mb * 2**20),
        )
        # MES: the plant file is checked before anything starts (a bad file stops the server).
        self.mes: MesService | None = None
        self.mes_queries: MesQueries | None = None
        if settings.plant_file is not None:
            self.mes_repository = MesRepository(settings.database_url)
            self.mes = MesService(
                load_plant(settings.plant_file),
                self.mes_repository,
                RunRepository(self.mes_repository.engine),
                self.historian,
            )
            self.mes.load()
            self.mes_queries = MesQueries(self.mes)
        self.live_tags = LiveTagTable()
        self.edges = EdgeRegistry()
        self.ingest = SparkplugIngest(
            self.live_tags,
            self.edges,
            self.historian,
            queue_capacity=settings.ingest_queue_capacity,
            max_future_ms=round(settings.max_clock_skew_s * 1000),
            derive=None if self.mes is None else self._derive,
        )
        # One connection, with its own session and STATE timestamp, per broker (H-07).
        factory = client_factory or _default_client_factory()
        self.hosts = [
            HostConnection(
                mqtt.endpoint(client_id=f"andon-host-{settings.host_id}"),
                HostApplicationSession(
                    settings.host_id,
                    rebirth_debounce_ms=settings.rebirth_debounce_ms,
                    reorder_timeout_ms=settings.reorder_timeout_ms,
                    state_v4_mode=settings.state_v4_mode,
                    namespace_filter=settings.sparkplug_filter,
                ),
                on_message=functools.partial(self.ingest.offer, link=index),
                client_factory=factory,
            )
            for index, mqtt in enumerate((settings.mqtt, *settings.extra_brokers))
        ]
        self.ingest.attach(self.hosts)
        self.host = self.hosts[0]
        # The UNS mirror of the MES (DESIGN §4.6): retained JSON per asset on every broker.
        self.uns: UnsPublisher | None = None
        if self.mes_queries is not None and settings.uns_enabled:
            self.uns = UnsPublisher(self.mes_queries, self.hosts, flush=self.historian.flush)
            for host in self.hosts:
                host.online_listeners.append(self.uns.republish_all)
        self.session = self.host.session
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
        if self.http is not None:
            self.http.start()
        log.info("server %s started", self.settings.host_id)

    def stop(self) -> None:
        """Stop taking messages, then drain everything received into the database."""
        if self.http is not None:
            self.http.stop()
        if self.uns is not None:
            self.uns.stop()
        for host in self.hosts:
            host.stop()
        self.ingest.stop()
        if not self.historian.stop(timeout=60.0):
            log.error("the historian could not write everything before stopping (see above)")
        self.store.close()
        if self.mes is not None:
            self.mes_repository.close()
        self.users.repository.close()
        log.info("server %s stopped", self.settings.host_id)

    def _derive(self, samples: Sequence[Sample]) -> None:
        assert self.mes is not None
        self.mes.offer(samples)
        if self.uns is not None:
            self.uns.offer(samples)

    def health(self) -> dict[str, dict[str, Any]]:
        writer = self.historian.stats()
        return {
            "mqtt": {
                "ok": all(host.online for host in self.hosts),
                "brokers": {host.endpoint.address: host.online for host in self.hosts},
                "host_id": self.settings.host_id,
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
