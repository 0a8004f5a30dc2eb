"""``OutboxDispatcher``: publishes the MES outbox to the broker, at least once, in id order.

A thread reads the oldest ``batch_size`` rows (``andon.storage.outbox``), publishes each as JSON
(QoS 1) on ``<topic_prefix>/<site>/<kind>`` with its own broker session, waits for the PUBACKs
and only then deletes the acknowledged rows. A row whose PUBACK did not come (the broker went
away, the session ended) stays and is sent again in a later round; so is everything after a
crash or kill -9, since the rows are the only state. Consumers therefore see duplicates, never
gaps, and keep a record only if its ``version`` (the row id) is newer than the one they hold.

Within a round, a record changed several times is published once, as its newest row; its older
rows are deleted with it (a consumer would skip them as older anyway).

``may_publish`` gates every round and every message: in a redundant cluster only the active
node publishes (a passive node's outbox rows are the shared database's, sent by the leader).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from andon.mqtt.interface import BrokerClient, MqttEndpoint
from andon.server.host_connection import BrokerClientFactory
from andon.storage.outbox import OutboxEntry, OutboxRepository

__all__ = ["DispatcherStats", "OutboxDispatcher", "outbox_topic"]

log = logging.getLogger(__name__)

#: How often an idle dispatcher looks for new rows (the write paths do not wake it: they are in
#: storage, below the server).
IDLE_POLL_S = 0.2


def outbox_topic(prefix: str, entry: OutboxEntry) -> str:
    # Site names and kinds are single topic levels (settings and RECORD_KINDS check that).
    return f"{prefix}/{entry.site}/{entry.kind}"


@dataclass(frozen=True, slots=True)
class DispatcherStats:
    connected: bool
    publishing: bool  # the gate is open (the active node of a cluster)
    published_total: int  # messages acknowledged by the broker
    deleted_total: int  # outbox rows removed after their PUBACK
    unacknowledged_total: int  # messages whose PUBACK did not come: sent again later
    failures_total: int  # rounds that failed (database errors)
    last_error: str | None


class OutboxDispatcher:
    def __init__(
        self,
        repository: OutboxRepository,
        endpoint: MqttEndpoint,
        client_factory: BrokerClientFactory,
        *,
        topic_prefix: str = "andon/v1/outbox",
        batch_size: int = 500,
        may_publish: Callable[[], bool] | None = None,
        ack_timeout_s: float = 30.0,
        idle_poll_s: float = IDLE_POLL_S,
    ) -> None:
        self.repository = repository
        self._prefix = topic_prefix
        self._batch_size = batch_size
        self._may_publish = may_publish or (lambda: True)
        self._ack_timeout_s = ack_timeout_s
        self._idle_poll_s = idle_poll_s
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._published = 0
        self._deleted = 0
        self._unacked = 0
        self._failures = 0
        self._last_error: str | None = None
        self.client: BrokerClient = client_factory(endpoint, on_message=self._ignore, listener=self)

    # -- BrokerClient callbacks ---------------------------------------------------------------
    @staticmethod
    def _ignore(topic: str, payload: bytes) -> None:
        """The dispatcher subscribes to nothing."""

    def on_connected(self) -> None:
        self._wake.set()

    def on_disconnected(self, reason: str) -> None:
        """Unacknowledged messages of the round stay in the outbox; nothing else to do."""

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("OutboxDispatcher.start() called twice")
        self.client.start()
        self._thread = threading.Thread(target=self._run, name="andon-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        self.client.stop()  # fails the tickets of a round in flight: its rows stay, sent later
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        """Look for new rows now (e.g. after a commit) instead of at the next idle poll."""
        self._wake.set()

    # -- publishing ---------------------------------------------------------------------------
    def _run(self) -> None:
        failing = False
        while not self._stopping.is_set():
            sent = 0
            if self._may_publish() and self.client.connected:
                try:
                    sent = self.publish_round()
                except Exception as error:  # the database: logged once per episode, retried
                    with self._lock:
                        self._failures += 1
                        self._last_error = str(error) or type(error).__name__
                    if not failing:
                        log.error("outbox dispatch failed, retrying: %s", error)
                    failing = True
                    self._stopping.wait(1.0)
                    continue
                if failing:
                    log.warning("outbox dispatch works again")
                failing = False
            if sent == 0:
                self._wake.wait(self._idle_poll_s)
                self._wake.clear()

    def publish_round(self) -> int:
        """Publish the oldest rows, wait for their PUBACKs, delete the acknowledged ones;
        returns how many messages were acknowledged."""
        rows = self.repository.pending(self._batch_size)
        if not rows:
            return 0
        newest: dict[str, OutboxEntry] = {}
        for row in rows:  # in id order: a record's last row is its newest
            newest[row.key] = row
        tickets: list[tuple[OutboxEntry, Any]] = []
        for row in sorted(newest.values(), key=lambda r: r.id):
            if not self._may_publish() or self._stopping.is_set():
                break  # demoted (or stopping) mid-round: what is not sent stays in the outbox
            ticket = self.client.publish(outbox_topic(self._prefix, row), row.payload(), qos=1)
            tickets.append((row, ticket))
        deadline = time.monotonic() + self._ack_timeout_s
        acked: set[str] = set()
        for row, ticket in tickets:
            if ticket.wait(max(0.0, deadline - time.monotonic())):
                acked.add(row.key)
        # A record's older rows go with its newest once that one is acknowledged.
        deleted = self.repository.delete(row.id for row in rows if row.key in acked)
        with self._lock:
            self._published += len(acked)
            self._deleted += deleted
            self._unacked += len(tickets) - len(acked)
        return len(acked)

    # -- diagnostics --------------------------------------------------------------------------
    def stats(self) -> DispatcherStats:
        publishing = self._may_publish()  # not under our lock: the gate may take its own
        with self._lock:
            return DispatcherStats(
                connected=self.client.connected,
                publishing=publishing,
                published_total=self._published,
                deleted_total=self._deleted,
                unacknowledged_total=self._unacked,
                failures_total=self._failures,
                last_error=self._last_error,
            )

    def health(self) -> dict[str, Any]:
        """The outbox component of ``/api/v1/health``: backlog (depth, oldest) and delivery."""
        stats = self.stats()
        try:
            backlog = self.repository.stats()
        except Exception as error:  # the database is away: the database component says so
            return {"ok": False, "error": str(error) or type(error).__name__}
        now_ms = time.time_ns() // 1_000_000
        oldest = backlog.oldest_created_ms
        return {
            # Degraded only when this node should deliver and cannot: a growing backlog while
            # the broker is away is reported, not an error of its own (the mqtt component is).
            "ok": stats.connected or not stats.publishing,
            "depth": backlog.depth,
            "oldest_created_ms": oldest,
            "oldest_age_s": None if oldest is None else max(0, now_ms - oldest) / 1000,
            "connected": stats.connected,
            "publishing": stats.publishing,
            "published_total": stats.published_total,
            "unacknowledged_total": stats.unacknowledged_total,
            "last_error": stats.last_error,
        }
