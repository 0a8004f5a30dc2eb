"""``MesServer``: the root object of ``andon server``. Reading the constructor shows the runtime."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from andon.api import ApiContext, create_app
from andon.mqtt.interface import MqttEndpoint, TlsSettings
from andon.server.edge_registry import EdgeRegistry
from andon.server.host_connection import BrokerClientFactory, HostConnection
from andon.server.http import HttpServer
from andon.server.ingest import SparkplugIngest
from andon.server.live_tags import LiveTagTable
from andon.server.metrics import ServerMetrics
from andon.settings import MqttSettings, ServerSettings
from andon.sparkplug.host import HostApplicationSession
from andon.storage.historian_writer import HistorianWriter
from andon.storage.migrate import upgrade_database
from andon.storage.store import open_historian_store

__all__ = ["MesServer", "endpoint_from_settings", "historian_spool_path"]

log = logging.getLogger(__name__)


def endpoint_from_settings(mqtt: MqttSettings, client_id: str) -> MqttEndpoint:
    tls = None
    if mqtt.tls_ca_file is not None:
        tls = TlsSettings(
            ca_file=str(mqtt.tls_ca_file),
            cert_file=str(mqtt.tls_cert_file) if mqtt.tls_cert_file else None,
            key_file=str(mqtt.tls_key_file) if mqtt.tls_key_file else None,
        )
    return MqttEndpoint(
        host=mqtt.host,
        port=mqtt.port,
        client_id=client_id,
        username=mqtt.username,
        password=mqtt.password.get_secret_value() if mqtt.password else None,
        tls=tls,
        keepalive_s=mqtt.keepalive_s,
    )


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
        self.live_tags = LiveTagTable()
        self.edges = EdgeRegistry()
        self.ingest = SparkplugIngest(
            self.live_tags,
            self.edges,
            self.historian,
            queue_capacity=settings.ingest_queue_capacity,
        )
        # One connection, with its own session and STATE timestamp, per broker (H-07).
        factory = client_factory or _default_client_factory()
        self.hosts = [
            HostConnection(
                endpoint_from_settings(mqtt, client_id=f"andon-host-{settings.host_id}"),
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
        self.session = self.host.session
        self.metrics = ServerMetrics(self)
        self.api = create_app(
            ApiContext(
                live_tags=self.live_tags,
                history=self.store,
                edges=self.edges,
                health=self.health,
                metrics_text=self.metrics.render,
            )
        )
        self.http = (
            HttpServer(self.api, settings.http_host, settings.http_port) if serve_http else None
        )

    def start(self) -> None:
        self.historian.start()
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
        for host in self.hosts:
            host.stop()
        self.ingest.stop()
        self.historian.stop()
        self.store.close()
        log.info("server %s stopped", self.settings.host_id)

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
