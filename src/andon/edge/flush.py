"""The edge's flush: spooled records go to the broker in order, as NDATA/DDATA, and leave the
spool only after the broker's PUBACK (checklist C).

``SpoolFlusher`` runs on the publisher thread (``publisher``), which owns the session's events,
births and devices and calls ``step`` while the node is born. After births, what was spooled
before them (the backlog) goes out marked ``is_historical``, and what the broker acknowledged
in the last rolling window is sent again as history. Rounds are pipelined: see
``flush_rounds``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from andon.edge.flush_rounds import FlushRound, OutgoingMessage, RoundPipeline, pack
from andon.edge.poller import LastValueCache
from andon.edge.spool import SpoolRecord, StoreAndForwardSpool
from andon.mqtt.interface import BrokerClient, PublishTicket
from andon.sparkplug.actions import Publish
from andon.sparkplug.edge_node import EdgeNodeSession
from andon.sparkplug.errors import SessionError
from andon.sparkplug.model import Metric
from andon.testing.clock import Clock

__all__ = ["PublisherStats", "SpoolFlusher"]

log = logging.getLogger(__name__)

#: How far back a re-send after births may reach at most (bounded work and disk).
_RESEND_LIMIT_S = 600.0


@dataclass(slots=True)
class PublisherStats:
    records_published_total: int = 0
    values_published_total: int = 0
    historical_values_total: int = 0
    births_total: int = 0
    resent_values_total: int = 0
    poison_records_total: int = 0
    commands_accepted_total: int = 0
    commands_rejected_total: int = 0
    device_deaths_total: int = 0
    device_births_total: int = 0
    born: bool = False
    flushing: bool = False


class SpoolFlusher:
    """Publishes the spool's records in rounds and removes them once acknowledged."""

    def __init__(
        self,
        session: EdgeNodeSession,
        session_lock: threading.Lock,
        spool: StoreAndForwardSpool,
        last_values: LastValueCache,
        clock: Clock,
        stats: PublisherStats,
        stop: threading.Event,
        *,
        batch_records: int,
        values_per_message: int,
        flush_period_s: float,
        rounds_in_flight: int,
        interleaved: bool,
        rolling_window_s: float,
        ack_timeout_s: float,
    ) -> None:
        self._session = session
        self._lock = session_lock
        self._spool = spool
        self._last_values = last_values
        self._clock = clock
        self.stats = stats
        self._stop = stop
        self._client: BrokerClient | None = None
        self._batch_records = batch_records
        self._values_per_message = values_per_message
        self._flush_period_s = flush_period_s
        self._rounds = RoundPipeline(rounds_in_flight)
        self._interleaved = interleaved
        self._rolling_window_s = rolling_window_s
        self._ack_timeout_s = ack_timeout_s
        #: Records up to this id were spooled before the current births: the backlog.
        self._backlog_through_id = 0
        #: Per device born after the node: records up to this id precede its DBIRTH.
        self._device_backlog: dict[str, int] = {}
        # Survives a restart: the rolling buffer remembers when it last saw a PUBACK.
        self._last_ack_ms: int | None = spool.last_sent_ms()
        self._previous_births_ms: int | None = None
        #: Acknowledged records are kept long enough for either rule of the re-send.
        self._retain_s = (
            max(rolling_window_s, _RESEND_LIMIT_S + rolling_window_s)
            if rolling_window_s > 0
            else 0.0
        )

    def attach(self, client: BrokerClient) -> None:
        self._client = client

    def births_published(self, backlog_through_id: int, now_ms: int) -> None:
        """The births went out: records up to ``backlog_through_id`` are the backlog."""
        self._backlog_through_id = backlog_through_id
        self._device_backlog = {}
        self.stats.flushing = True
        self._resend_rolling_buffer(now_ms)
        self._previous_births_ms = now_ms

    def device_born(self, device_id: str, backlog_through_id: int) -> None:
        """A DBIRTH went out: the device's records up to ``backlog_through_id`` are history."""
        self._device_backlog[device_id] = backlog_through_id

    def _resend_rolling_buffer(self, now_ms: int) -> None:
        """Re-send, as history, what the broker acknowledged in the last rolling window.

        A host (or link) that died unnoticed may have missed it; the host's historian is
        idempotent on (tag, timestamp), so a copy it already has costs nothing.
        """
        assert self._client is not None
        if self._rolling_window_s <= 0:
            return
        # The window reaches back from when the flow last worked (the last PUBACK), not from
        # now: a host that died unnoticed is only detected later (its Will comes after up to
        # 1.5 x its keep-alive), and the restart that follows takes more time again.
        # It also covers everything since the previous births (up to _RESEND_LIMIT_S): a new
        # births means the host may have missed that whole period, e.g. when a restarted broker
        # restored the host's retained online STATE before the host itself was back.
        window_ms = round(self._rolling_window_s * 1000)
        last_flow_ms = min(now_ms, self._last_ack_ms or now_ms)
        since = min(last_flow_ms, self._previous_births_ms or now_ms) - window_ms
        since = max(since, now_ms - round(_RESEND_LIMIT_S * 1000))
        recent = self._spool.recently_sent(since)
        sent: list[PublishTicket] = []
        for message in self._pack(recent):
            message.historical = True
            publish = self._encode(message, poison_ack=False)
            if publish is None:
                return
            sent.append(self._client.publish(publish.topic, publish.payload, publish.qos))
        if all(t.wait(self._ack_timeout_s) for t in sent) and recent:
            self.stats.resent_values_total += sum(r.value_count for r in recent)
            log.info("re-sent %d recently acknowledged records as history", len(recent))

    def step(self) -> bool:
        """One step of the flush: publish the next round, or settle the oldest one in flight.

        A round is published while fewer than ``rounds_in_flight`` are in flight (see
        ``flush_rounds``); otherwise, or when the spool holds nothing more to send, the oldest
        round's PUBACKs are awaited and its records leave the spool. Returns False when nothing
        is left to send or in flight, and when nothing could be sent (a round failed).
        """
        rounds = self._rounds
        if rounds.has_room():
            through = self._backlog_through_id
            records = rounds.next_records(
                self._spool, self._batch_records, through, interleaved=self._interleaved
            )
            if records:
                flushing = any(r.id <= through for r in records)
                self.stats.flushing = flushing
                published = self._publish_round(records)
                if not published.sent and rounds.in_flight == 1:
                    rounds.clear()  # nothing could be sent: wait (e.g. for a DBIRTH) as before
                    return False
                if published.sent and flushing and self._flush_period_s > 0:
                    self._stop.wait(self._flush_period_s)
                return True
        if not rounds.in_flight:
            self.stats.flushing = False
            return False
        return self._settle_oldest()

    def _publish_round(self, records: Sequence[SpoolRecord]) -> FlushRound:
        """Publish ``records`` packed into messages, and put the round in flight."""
        assert self._client is not None
        published = FlushRound()
        for message in self._pack(records):
            publish = self._encode(message)
            if publish is None:
                published.complete = False
                break
            ticket = self._client.publish(publish.topic, publish.payload, publish.qos)
            published.sent.append((message, ticket))
        through = self._backlog_through_id if self._interleaved else None
        self._rounds.add(records, published, backlog_through_id=through)
        return published

    def _settle_oldest(self) -> bool:
        """Remove the oldest round's acknowledged records from the spool (to the rolling buffer).

        Returns False when nothing of it was acknowledged because a PUBACK did not come.
        """
        acknowledged, complete = self._rounds.settle_oldest(self._ack_timeout_s)
        acked = [r.id for message in acknowledged for r in message.records]
        for message in acknowledged:
            self.stats.records_published_total += len(message.records)
            self.stats.values_published_total += message.values
            if message.historical:
                self.stats.historical_values_total += message.values
        if acked:
            self._spool.ack(acked, retain_s=self._retain_s)
            self._last_ack_ms = self._clock.now_ms()
        return complete or bool(acked)

    def settle_all(self) -> None:
        """Settle every round in flight (before births, after a disconnect, on stop)."""
        while self._rounds.in_flight:
            self._settle_oldest()

    def _pack(self, records: Sequence[SpoolRecord]) -> list[OutgoingMessage]:
        """Messages of one device each; a record spooled before the births (or before its
        device's DBIRTH) is history."""

        def historical(record: SpoolRecord) -> bool:
            through = self._device_backlog.get(record.device_id or "", 0)
            return record.id <= max(self._backlog_through_id, through)

        return pack(records, self._values_per_message, historical)

    def _encode(self, message: OutgoingMessage, *, poison_ack: bool = True) -> Publish | None:
        names, values, timestamps, properties = message.columns()
        with self._lock:
            try:
                return self._session.data_columns(
                    message.device_id,
                    names,
                    values,
                    timestamps,
                    self._clock.now_ms(),
                    properties=properties,
                    historical=message.historical,
                )
            except SessionError as exc:
                if not self._session.is_born:
                    return None  # a rebirth or a disconnect came first
                device = message.device_id
                if (
                    device is not None
                    and device not in self._session.born_devices
                    and device in self._last_values.device_ids()
                ):
                    return None  # a device between loss and DBIRTH: the next round births it
                # Born, yet a record names a metric no birth declared: it can never be sent.
                poison = [r.id for r in message.records if not self._sendable(r)]
                log.error("dropping spool records %s: %s", poison, exc)
                self.stats.poison_records_total += len(poison)
                if poison_ack and poison:
                    self._spool.ack(poison)
                return None

    def _sendable(self, record: SpoolRecord) -> bool:
        metrics = [Metric(c.name, c.value, timestamp=c.ts_ms) for c in record.changes]
        try:
            self._session.check_data(record.device_id or None, metrics)
        except SessionError:
            return False
        return True
