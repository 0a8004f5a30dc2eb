"""``EnterpriseConsumer``: the enterprise side of site -> enterprise forwarding.

One persistent MQTT session per source broker (``clean_session=False`` and a stable client id),
subscribed with QoS 1 to ``<topic_prefix>/<site>/+`` for each configured site, so the broker
keeps what the sites publish while the enterprise is down and delivers it when it returns. The
sessions acknowledge by hand (``manual_ack``): a message's PUBACK is sent only after the
transaction that stored it committed, so a crash (kill -9) between the two re-delivers the
message instead of losing it. Storing is idempotent (``EnterpriseRepository.apply``): a message
applies only if its version is newer than the stored one.

The MQTT network threads only put deliveries into one bounded queue; a single writer thread
takes up to ``batch_size`` of them per transaction. While the database is away the writer
retries with backoff and nothing is acknowledged; the full queue then blocks the network
threads, the brokers stop sending (their in-flight windows fill) and keep the rest.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from andon.mqtt.interface import BrokerClient, MqttEndpoint
from andon.server.host_connection import BrokerClientFactory
from andon.storage.enterprise import EnterpriseRepository, OutboxMessage, parse_outbox_message

__all__ = ["ConsumerStats", "EnterpriseConsumer", "EnterpriseSource"]

log = logging.getLogger(__name__)

_PUT_POLL_S = 0.5  # how often a blocked network thread checks for stop


@dataclass(frozen=True, slots=True)
class EnterpriseSource:
    """One broker to consume from and the sites to take there ("+": every site)."""

    name: str
    endpoint: MqttEndpoint
    sites: Sequence[str] = ("+",)


@dataclass(frozen=True, slots=True)
class ConsumerStats:
    received_total: int
    applied_total: int  # messages that changed a record
    ignored_total: int  # duplicates and messages older than the stored version
    malformed_total: int  # not an outbox message: logged, acknowledged, dropped
    failures_total: int  # failed transactions (retried)
    queued: int
    connected: dict[str, bool]  # source name -> session up and subscribed
    last_error: str | None


@dataclass(slots=True)
class _Delivery:
    source: str
    topic: str
    payload: bytes
    ack: Callable[[], None]


class _SourceSession:
    """The persistent session to one source broker."""

    def __init__(
        self,
        source: EnterpriseSource,
        topic_prefix: str,
        client_factory: BrokerClientFactory,
        deliver: Callable[[_Delivery], None],
    ) -> None:
        self.source = source
        self._filters = [(f"{topic_prefix}/{site}/+", 1) for site in source.sites]
        self._deliver = deliver
        #: The session is up and its subscriptions acknowledged (SUBACK).
        self.subscribed = False
        self.client: BrokerClient = client_factory(
            source.endpoint, on_message=self._on_message, listener=self
        )

    def _on_message(self, topic: str, payload: bytes, ack: Callable[[], None]) -> None:
        self._deliver(_Delivery(self.source.name, topic, payload, ack))

    def on_connected(self) -> None:
        # A resumed session keeps its subscriptions; subscribing again is harmless and makes
        # the first session (or a broker that lost its sessions) subscribed too.
        self.subscribed = self.client.subscribe(self._filters)
        if not self.subscribed:
            log.error(
                "enterprise source %s: subscribing to %s was refused or timed out",
                self.source.name,
                ", ".join(f for f, _ in self._filters),
            )

    def on_disconnected(self, reason: str) -> None:
        """Unacknowledged deliveries come again in the next session."""
        self.subscribed = False


class EnterpriseConsumer:
    def __init__(
        self,
        repository: EnterpriseRepository,
        sources: Sequence[EnterpriseSource],
        client_factory: BrokerClientFactory,
        *,
        topic_prefix: str = "andon/v1/outbox",
        batch_size: int = 500,
        retry_backoff_s: tuple[float, float] = (0.2, 5.0),
    ) -> None:
        if not sources:
            raise ValueError("the enterprise consumer needs at least one source")
        self.repository = repository
        self._prefix = topic_prefix
        self._batch_size = batch_size
        self._backoff = retry_backoff_s
        self._queue: queue.Queue[_Delivery] = queue.Queue(maxsize=2 * batch_size)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._received = self._applied = self._ignored = self._malformed = self._failures = 0
        self._last_error: str | None = None
        self.sessions = [
            _SourceSession(source, topic_prefix, client_factory, self._offer) for source in sources
        ]

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("EnterpriseConsumer.start() called twice")
        self._thread = threading.Thread(target=self._run, name="andon-enterprise", daemon=True)
        self._thread.start()
        for session in self.sessions:
            session.client.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking messages, store what was taken, then close the sessions (what is not
        stored is not acknowledged: the brokers deliver it again next time)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for session in self.sessions:
            session.client.stop()

    # -- network threads ----------------------------------------------------------------------
    def _offer(self, delivery: _Delivery) -> None:
        with self._lock:
            self._received += 1
        while not self._stopping.is_set():
            try:
                self._queue.put(delivery, timeout=_PUT_POLL_S)
                return
            except queue.Full:
                continue  # back-pressure: the broker waits for our PUBACKs meanwhile

    # -- writer thread ------------------------------------------------------------------------
    def _take(self) -> list[_Delivery]:
        try:
            batch = [self._queue.get(timeout=_PUT_POLL_S)]
        except queue.Empty:
            return []
        while len(batch) < self._batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                if self._stopping.is_set():
                    return
                continue
            self._store(batch)

    def _parse(self, delivery: _Delivery) -> OutboxMessage | None:
        try:
            message = parse_outbox_message(delivery.payload)
            expected = f"{self._prefix}/{message.site}/{message.kind}"
            if delivery.topic != expected:
                raise ValueError(f"site or kind differ from the topic (expected {expected})")
        except ValueError as error:
            with self._lock:
                self._malformed += 1
            log.warning(
                "enterprise source %s: dropped a message on %s: %s",
                delivery.source,
                delivery.topic,
                error,
            )
            return None
        return message

    def _store(self, batch: list[_Delivery]) -> None:
        """Apply the batch in one transaction (retried until it commits), then acknowledge."""
        messages = [m for m in map(self._parse, batch) if m is not None]
        delay, failing = self._backoff[0], False
        while True:
            try:
                applied = self.repository.apply(messages)
                break
            except Exception as error:  # the database: nothing is acknowledged meanwhile
                with self._lock:
                    self._failures += 1
                    self._last_error = str(error) or type(error).__name__
                if not failing:
                    log.error("enterprise records could not be stored, retrying: %s", error)
                failing = True
                if self._stopping.wait(delay):
                    return  # not acknowledged: delivered again after the restart
                delay = min(delay * 2, self._backoff[1])
        if failing:
            log.warning("enterprise records are stored again")
        with self._lock:
            self._applied += applied
            self._ignored += len(messages) - applied
        for delivery in batch:  # in the order received, each in its own session
            delivery.ack()

    # -- diagnostics --------------------------------------------------------------------------
    def stats(self) -> ConsumerStats:
        with self._lock:
            return ConsumerStats(
                received_total=self._received,
                applied_total=self._applied,
                ignored_total=self._ignored,
                malformed_total=self._malformed,
                failures_total=self._failures,
                queued=self._queue.qsize(),
                connected={
                    s.source.name: s.client.connected and s.subscribed for s in self.sessions
                },
                last_error=self._last_error,
            )

    def health(self) -> dict[str, Any]:
        stats = self.stats()
        return {
            "ok": all(stats.connected.values()),
            "sources": stats.connected,
            "received_total": stats.received_total,
            "applied_total": stats.applied_total,
            "ignored_total": stats.ignored_total,
            "malformed_total": stats.malformed_total,
            "queued": stats.queued,
            "last_error": stats.last_error,
        }
