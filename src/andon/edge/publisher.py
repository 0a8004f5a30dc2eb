"""Moves spooled records to the broker in order; a record leaves the spool only after PUBACK.

One thread owns the publishing side of the edge-node session: births, data (from the spool,
oldest first), diagnostics, and the handling of commands and STATE messages. MQTT callbacks
only enqueue events for it, so every publish, and so every ``seq``, happens in one order. The
flush of the spool itself (rounds in flight, encoding, acknowledgements, the rolling buffer's
re-send) is ``andon.edge.flush``, which this thread drives.

Devices of real equipment come and go (checklist E-10): a device the poller marked lost gets its
DDEATH once every record spooled before the loss is out (its last data precede its death), and a
device that answers again gets a DBIRTH from the last-value cache; records of that device
spooled before its DBIRTH then go out as history. A command that fails is reported to the host as
the node metric ``Andon/Command/LastError``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from andon.edge.flush import PublisherStats, SpoolFlusher
from andon.edge.poller import LastValue, LastValueCache
from andon.edge.sources.base import GOOD, Source
from andon.edge.spool import StoreAndForwardSpool
from andon.mqtt.interface import BrokerClient
from andon.sparkplug.actions import Disconnect, Problem, Publish, Subscribe
from andon.sparkplug.edge_node import (
    READ_ONLY_PROPERTY,
    BirthsRequired,
    CommandRejected,
    EdgeNodeSession,
    WriteRequested,
)
from andon.sparkplug.errors import SessionError
from andon.sparkplug.model import DataType, Metric, PropertyValue
from andon.testing.clock import Clock

__all__ = ["COMMANDS_REJECTED_METRIC", "COMMAND_ERROR_METRIC", "PublisherStats", "SpoolPublisher"]

log = logging.getLogger(__name__)

_CONNECTED = "connected"
_DISCONNECTED = "disconnected"
_MESSAGE = "message"

#: Node metrics that tell the host why the last command was refused, and how many were.
COMMAND_ERROR_METRIC = "Andon/Command/LastError"
COMMANDS_REJECTED_METRIC = "Andon/Command/Rejected"


def _quality(quality: int) -> dict[str, PropertyValue]:
    """The ``Quality`` property; left out when GOOD (the host's default), saving bytes."""
    return {} if quality == GOOD else {"Quality": quality}


class SpoolPublisher:
    def __init__(
        self,
        session: EdgeNodeSession,
        session_lock: threading.Lock,
        spool: StoreAndForwardSpool,
        last_values: LastValueCache,
        sources: Sequence[Source],
        clock: Clock,
        *,
        batch_records: int = 200,
        values_per_message: int = 1000,
        flush_period_s: float = 0.0,
        rounds_in_flight: int = 4,
        interleaved: bool = False,
        rolling_window_s: float = 0.0,
        ack_timeout_s: float = 15.0,
        diagnostics_every_s: float = 5.0,
        persist_fence_epoch: Callable[[int], None] | None = None,
        next_server: Callable[[], None] | None = None,
    ) -> None:
        self._session = session
        self._lock = session_lock
        self._spool = spool
        self._last_values = last_values
        self._sources = sources
        self._clock = clock
        self._next_server = next_server
        self._last_command_error = ""
        self._ack_timeout_s = ack_timeout_s
        self._diagnostics_every_s = diagnostics_every_s
        self._persist_fence_epoch = persist_fence_epoch
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=10_000)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: BrokerClient | None = None
        self._connected = False
        self._births_pending = False
        self._last_diagnostics: dict[str, int | bool] = {}
        self._next_diagnostics = 0.0
        self.stats = PublisherStats()
        self._flusher = SpoolFlusher(
            session,
            session_lock,
            spool,
            last_values,
            clock,
            self.stats,
            self._stop,
            batch_records=batch_records,
            values_per_message=values_per_message,
            flush_period_s=flush_period_s,
            rounds_in_flight=rounds_in_flight,
            interleaved=interleaved,
            rolling_window_s=rolling_window_s,
            ack_timeout_s=ack_timeout_s,
        )

    def attach(self, client: BrokerClient) -> None:
        self._client = client
        self._flusher.attach(client)

    # -- callbacks from the broker client (other threads) -------------------------------------
    def on_connected(self) -> None:
        """Subscribe (waiting for SUBACKs) on the client's event thread, then hand over."""
        assert self._client is not None
        with self._lock:
            actions = self._session.on_connected(self._clock.now_ms())
        births = False
        for action in actions:
            if isinstance(action, Subscribe):
                if not self._client.subscribe(action.filters):
                    log.error("command subscriptions refused; reconnecting")
                    self._client.disconnect()
                    return
            elif isinstance(action, BirthsRequired):
                births = True
        self._post(_CONNECTED, births)

    def on_disconnected(self, reason: str) -> None:
        # The session must learn of the disconnect now, on the event thread, in turn with
        # ``on_connected``: were it left to the (possibly busy) publisher thread, a quick
        # reconnect would reach the session as connected-then-disconnected and no birth would
        # ever follow.
        with self._lock:
            self._session.on_disconnected()
        self._post(_DISCONNECTED, reason)

    def on_message(self, topic: str, payload: bytes) -> None:
        self._post(_MESSAGE, (topic, payload))

    def wake(self) -> None:
        self._wake.set()

    def _post(self, kind: str, detail: Any) -> None:
        self._events.put((kind, detail))
        self._wake.set()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="andon-edge-publisher", daemon=True)
        self._thread.start()

    def drain(self, timeout: float) -> bool:
        """Wait until the spool holds no unsent record, for a clean stop once polling ended.

        Returns False at once when the session is not born (no broker, or the primary host is
        offline) and after ``timeout``: what is left stays in the spool for the next start.
        """
        deadline = time.monotonic() + timeout  # wall time, also under a test clock
        while self._spool.stats().records > 0:
            if not (self._connected and self.stats.born) or time.monotonic() >= deadline:
                return False
            self._wake.set()
            self._stop.wait(0.02)
        return True

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # -- the publisher thread ----------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._handle_events()
                if not self._connected:
                    self._idle()
                elif self._births_pending:
                    self._publish_births()
                elif not self.stats.born:
                    self._idle()  # waiting for the primary host's STATE
                elif self._reconcile_devices() or not self._flusher.step():
                    self._publish_diagnostics()
                    self._idle()
            except Exception:  # a bug must not stop the flow of data; it is retried
                log.exception("edge publisher failed; retrying")
                self._stop.wait(1.0)
        try:  # what the broker acknowledged leaves the spool, or it would be sent again
            self._flusher.settle_all()
        except Exception:
            log.exception("edge publisher: settling the rounds in flight on stop failed")

    def _idle(self) -> None:
        self._wake.wait(0.5)
        self._wake.clear()

    def _handle_events(self) -> None:
        while True:
            try:
                kind, detail = self._events.get_nowait()
            except queue.Empty:
                return
            if kind == _CONNECTED:
                self._connected = True
                # A retained STATE may have been handled already (it arrives during the
                # subscribe, before this event): keep a births request it made.
                self._births_pending = self._births_pending or bool(detail)
            elif kind == _DISCONNECTED:
                self._connected = False
                self._births_pending = False
                self.stats.born = False
                # The session failed what it had not acknowledged: keep only what it had.
                self._flusher.settle_all()
            elif kind == _MESSAGE:
                topic, payload = detail
                self._on_message(topic, payload)

    def _on_message(self, topic: str, payload: bytes) -> None:
        assert self._client is not None
        with self._lock:
            before = self._session.highest_fence_epoch
            actions = self._session.on_message(topic, payload, self._clock.now_ms())
            after = self._session.highest_fence_epoch
        if after != before and self._persist_fence_epoch is not None and after is not None:
            self._persist_fence_epoch(after)
        for action in actions:
            if isinstance(action, BirthsRequired):
                self._births_pending = True
                self.stats.born = False
            elif isinstance(action, Publish):
                self._client.publish(action.topic, action.payload, action.qos, action.retain).wait(
                    self._ack_timeout_s
                )
            elif isinstance(action, Disconnect):
                log.warning("disconnecting: %s", action.reason)
                self.stats.born = False
                if action.next_server and self._next_server is not None:
                    self._next_server()
                else:
                    self._client.disconnect()
            elif isinstance(action, WriteRequested):
                self._write(action)
            elif isinstance(action, CommandRejected):
                self._command_failed(f"{action.device_id or '(node)'}: {action.reason}")
            elif isinstance(action, Problem):
                log.warning("%s on %s: %s", action.kind, topic, action.detail)

    def _write(self, request: WriteRequested) -> None:
        for metric in request.metrics:
            source = next((s for s in self._sources if request.device_id in s.describe()), None)
            if source is None or request.device_id is None or metric.name is None:
                self._command_failed(f"{request.device_id or '(node)'}: no such writable device")
                continue
            result = source.write(request.device_id, metric.name, metric.value)
            if result.accepted:
                self.stats.commands_accepted_total += 1
                log.info("wrote %s/%s = %r", request.device_id, metric.name, metric.value)
            else:
                self._command_failed(f"{request.device_id}/{metric.name}: {result.reason}")

    def _command_failed(self, error: str) -> None:
        """Count and log a refused command and tell the host why (NDATA)."""
        assert self._client is not None
        self.stats.commands_rejected_total += 1
        self._last_command_error = error
        log.warning("command refused: %s", error)
        with self._lock:
            try:
                publish = self._session.data(None, self._command_metrics(), self._clock.now_ms())
            except SessionError:
                return  # not born: the next NBIRTH carries the error
        self._client.publish(publish.topic, publish.payload, publish.qos)

    def _command_metrics(self) -> list[Metric]:
        now_ms = self._clock.now_ms()
        # Transient: diagnostics for the live view, like the spool figures, not plant history.
        return [
            Metric(
                COMMAND_ERROR_METRIC,
                self._last_command_error,
                DataType.STRING,
                now_ms,
                is_transient=True,
            ),
            Metric(
                COMMANDS_REJECTED_METRIC,
                self.stats.commands_rejected_total,
                DataType.INT64,
                now_ms,
                is_transient=True,
            ),
        ]

    def _birth_metrics(self, device: str, values: dict[str, LastValue]) -> list[Metric]:
        """A device's birth metrics; those not writable say so (the host then refuses writes
        to them before sending anything)."""
        specs = self._last_values.specs(device)
        metrics = []
        for name, last in sorted(values.items()):
            properties = _quality(last.quality)
            spec = specs.get(name)
            if spec is None or not spec.writable:
                properties[READ_ONLY_PROPERTY] = True
            metrics.append(
                Metric(name, last.value, last.datatype, timestamp=last.ts_ms, properties=properties)
            )
        return metrics

    def _reconcile_devices(self) -> bool:
        """DDEATH for lost devices whose earlier records are out, DBIRTH for returned ones.

        Returns True when it published something (the caller then loops again).
        """
        assert self._client is not None
        lost = self._last_values.lost()
        with self._lock:
            born = set(self._session.born_devices)
        publishes = []
        dying = [device for device in lost if device in born]
        if dying:
            head = self._spool.peek(1)
            oldest = head[0].id if head else None
            for device in dying:
                loss = lost[device]
                if oldest is not None and oldest <= loss.through_id:
                    continue  # its last data are still in the spool: they go first
                with self._lock:
                    publishes.append(self._session.device_death(device, loss.ts_ms))
                born.discard(device)
                self.stats.device_deaths_total += 1
                log.warning("device %s lost: DDEATH", device)
        for device in self._last_values.device_ids():
            if device in born or not self._last_values.ready(device):
                continue
            through = self._spool.last_id()  # read before the values, as in _publish_births
            metrics = self._birth_metrics(device, self._last_values.snapshot().get(device, {}))
            with self._lock:
                publishes.append(self._session.device_birth(device, metrics, self._clock.now_ms()))
            self._flusher.device_born(device, through)
            self.stats.device_births_total += 1
            log.info("device %s answers: DBIRTH", device)
        tickets = [self._client.publish(p.topic, p.payload, p.qos, p.retain) for p in publishes]
        for ticket in tickets:
            ticket.wait(self._ack_timeout_s)
        return bool(publishes)

    def _publish_births(self) -> None:
        assert self._client is not None
        # Rounds published before these births are settled first: a rebirth restarts the
        # flush from the spool's head with a new backlog boundary.
        self._flusher.settle_all()
        if not self._last_values.wait_primed(1.0):
            return  # births need every metric's value; the first poll provides them
        now_ms = self._clock.now_ms()
        # The backlog boundary is read before the values: a record spooled in between is then
        # sent live (and perhaps twice, harmlessly) rather than hidden behind a stale birth.
        backlog_through = self._spool.last_id()
        # Every device with all its values is born, a lost one too: the records spooled before
        # its loss go out first, then its DDEATH (``_reconcile_devices``).
        devices = {
            device: self._birth_metrics(device, values)
            for device, values in self._last_values.snapshot().items()
            if len(values) == len(self._last_values.specs(device))
        }
        node_metrics = self._diagnostic_metrics(now_ms) + self._command_metrics()
        with self._lock:
            try:
                publishes = self._session.births(node_metrics, devices, now_ms)
            except SessionError as exc:
                log.info("births deferred: %s", exc)
                self._births_pending = False
                return
        tickets = [self._client.publish(p.topic, p.payload, p.qos, p.retain) for p in publishes]
        if all(t.wait(self._ack_timeout_s) for t in tickets):
            self._births_pending = False
            self.stats.born = True
            self.stats.births_total += 1
            log.info("births published (%d devices)", len(devices))
            self._flusher.births_published(backlog_through, now_ms)

    def _diagnostic_metrics(self, now_ms: int) -> list[Metric]:
        spool = self._spool.stats()
        values: dict[str, int | bool] = {
            "Andon/Spool/Records": spool.records,
            "Andon/Spool/Values": spool.values,
            "Andon/Spool/Bytes": spool.bytes,
            "Andon/Spool/OldestMs": spool.oldest_ts_ms or 0,
            "Andon/Spool/DroppedValues": spool.dropped_values_total,
            "Andon/Spool/Flushing": self.stats.flushing,
        }
        self._last_diagnostics = values
        return [
            Metric(
                name,
                value,
                DataType.BOOLEAN if isinstance(value, bool) else DataType.INT64,
                timestamp=now_ms,
                is_transient=True,  # diagnostics: shown live, never historised
            )
            for name, value in values.items()
        ]

    def _publish_diagnostics(self) -> None:
        assert self._client is not None
        now = self._clock.monotonic()
        if now < self._next_diagnostics:
            return
        self._next_diagnostics = now + self._diagnostics_every_s
        previous = self._last_diagnostics
        metrics = [
            m
            for m in self._diagnostic_metrics(self._clock.now_ms())
            if previous.get(m.name or "") != m.value
        ]
        if not metrics:
            return
        with self._lock:
            try:
                publish = self._session.data(None, metrics, self._clock.now_ms())
            except SessionError:
                return
        self._client.publish(publish.topic, publish.payload, publish.qos)
