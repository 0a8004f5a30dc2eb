"""Prometheus metrics of the server, collected on scrape from the live objects."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from andon.server._mes_derive import dropped_counter_jumps

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
        jumps = CounterMetricFamily(
            "andon_mes_counter_jumps_dropped",
            "Counter jumps faster than the asset can produce, not counted (restarted or "
            "replaced counters)",
            labels=["asset", "counter"],
        )
        for (asset, role), count in sorted(dropped_counter_jumps().items()):
            jumps.add_metric([asset, role], count)
        yield jumps
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
        yield CounterMetricFamily(
            "andon_historian_insert_process_restarts",
            "Historian insert processes started again after one was lost (its batch retried)",
            value=sum(inserts.restarts_total for inserts in server.insert_processes),
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
        yield from _forwarding_metrics(server)


def _forwarding_metrics(server: MesServer) -> Iterator[Metric]:
    """The outbox backlog and delivery of a site, the consumer's counts on an enterprise."""
    outbox = server.forwarding.outbox
    if outbox is not None:
        sent = outbox.stats()
        yield CounterMetricFamily(
            "andon_outbox_published",
            "Outbox messages acknowledged by the broker",
            value=sent.published_total,
        )
        yield CounterMetricFamily(
            "andon_outbox_unacknowledged",
            "Outbox messages whose PUBACK did not come (sent again)",
            value=sent.unacknowledged_total,
        )
        try:
            backlog = outbox.repository.stats()
        except Exception:  # the database is away: andon_database_up says so
            backlog = None
        if backlog is not None:
            yield GaugeMetricFamily(
                "andon_outbox_depth", "Outbox rows waiting for the broker", value=backlog.depth
            )
            oldest = backlog.oldest_created_ms
            age = 0.0 if oldest is None else max(0, time.time_ns() // 1_000_000 - oldest) / 1000
            yield GaugeMetricFamily(
                "andon_outbox_oldest_age_seconds",
                "Age of the oldest waiting outbox row",
                value=age,
            )
    consumer = server.forwarding.enterprise
    if consumer is not None:
        got = consumer.stats()
        for name, value, text in (
            ("received", got.received_total, "Outbox messages received from the sites"),
            ("applied", got.applied_total, "Messages that changed an enterprise record"),
            ("ignored", got.ignored_total, "Duplicates and messages older than stored"),
            ("malformed", got.malformed_total, "Messages that were no outbox message"),
        ):
            yield CounterMetricFamily(f"andon_enterprise_{name}", text, value=value)
