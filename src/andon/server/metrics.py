"""Prometheus metrics of the server, collected on scrape from the live objects."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from andon.server.mes_server import MesServer

__all__ = ["ServerMetrics"]


class ServerMetrics(Collector):
    def __init__(self, server: MesServer) -> None:
        self._server = server
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def render(self) -> bytes:
        data: bytes = generate_latest(self.registry)
        return data

    def collect(self) -> Iterator[Metric]:
        server = self._server
        ingest = server.ingest.stats
        yield CounterMetricFamily(
            "andon_ingest_messages", "Sparkplug messages processed", value=ingest.messages_total
        )
        yield CounterMetricFamily(
            "andon_ingest_values", "Metric values received", value=ingest.values_total
        )
        yield CounterMetricFamily(
            "andon_ingest_historical_values",
            "Metric values received flagged is_historical (store-and-forward)",
            value=ingest.historical_values_total,
        )
        yield GaugeMetricFamily(
            "andon_ingest_queue_depth",
            "Received messages waiting for decoding",
            value=server.ingest.queue_depth,
        )
        problems = CounterMetricFamily(
            "andon_sparkplug_problems", "Bad input handled, by kind", labels=["kind"]
        )
        for kind, count in sorted(server.edges.totals().items()):
            problems.add_metric([kind], count)
        yield problems
        writer = server.historian.stats()
        yield GaugeMetricFamily(
            "andon_historian_queue_depth", "Samples waiting for the writer", value=writer.queued
        )
        yield CounterMetricFamily(
            "andon_historian_committed", "Samples committed", value=writer.committed_total
        )
        yield GaugeMetricFamily(
            "andon_historian_spool_samples",
            "Samples on the local disk spool while the database is unreachable",
            value=writer.spool_samples,
        )
        yield CounterMetricFamily(
            "andon_historian_batches", "Transactions committed", value=writer.batches_total
        )
        yield GaugeMetricFamily(
            "andon_historian_last_batch_size",
            "Samples in the last batch",
            value=writer.last_batch_size,
        )
        yield GaugeMetricFamily(
            "andon_historian_last_batch_seconds",
            "Duration of the last batch transaction",
            value=writer.last_batch_seconds,
        )
        yield CounterMetricFamily(
            "andon_historian_failures",
            "Failed write attempts (retried)",
            value=writer.failures_total,
        )
        yield CounterMetricFamily(
            "andon_historian_quarantined",
            "Samples that could never be written, moved to quarantine",
            value=writer.quarantined_total,
        )
        yield GaugeMetricFamily(
            "andon_database_up",
            "1 when the last database write succeeded",
            value=int(writer.database_up),
        )
        yield GaugeMetricFamily(
            "andon_mqtt_connected",
            "1 while the host session is online",
            value=int(all(h.online for h in server.hosts)),
        )
        yield GaugeMetricFamily(
            "andon_live_tags", "Tags in the live table", value=len(server.live_tags)
        )
        nodes = server.edges.nodes()
        yield GaugeMetricFamily(
            "andon_edge_nodes_online", "Edge nodes online", value=sum(n.online for n in nodes)
        )
