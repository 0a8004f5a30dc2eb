"""The ingest pipeline: received Sparkplug messages -> live tags, history, diagnostics.

One thread owns the host session's message handling. The MQTT network thread only enqueues
raw messages into a bounded queue (blocking when full, so a slow database slows the broker's
delivery instead of dropping data). A message is acknowledged to the broker once it is queued
here, so what sits in this queue and the historian's is held only in memory until committed:
both queues are bounded well below what the edges' rolling buffer re-sends after a crash.

The ingest thread handles messages in batches: what is waiting when it looks, and, when that
is less than a batch, what arrives in the next ``ingest_gather_ms``. A batch's samples go to
the historian, the MES and the live table in one call each; per message, those calls and the
thread's wake-up cost more than the values themselves at a plant's usual message size.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from andon.server.edge_registry import EdgeRegistry
from andon.server.live_tags import LiveTag, LiveTagTable
from andon.sparkplug.actions import Disconnect, Problem, Publish
from andon.sparkplug.host import (
    DeviceOffline,
    DeviceOnline,
    HostApplicationSession,
    MetricsReceived,
    MetricsStale,
    NodeOffline,
    NodeOnline,
)
from andon.sparkplug.model import DataType, Quality
from andon.storage.types import Sample

__all__ = ["HostLink", "IngestStats", "SampleSink", "SparkplugIngest", "tag_path"]

log = logging.getLogger(__name__)

#: Control metrics are protocol, not plant data: they are neither historised nor shown.
_PROTOCOL_METRICS = ("bdSeq", "Node Control/")
#: Node metrics in which an Andon edge reports its store-and-forward spool.
_SPOOL_PREFIX = "Andon/Spool/"
#: Per-value enum conversions, looked up instead (``int(...)`` / ``.name`` cost more).
_DATATYPE_CODES: dict[object, int] = {datatype: int(datatype) for datatype in DataType}
_QUALITY_CODES: dict[object, int] = {quality: int(quality) for quality in Quality}
_QUALITY_NAMES: dict[object, str] = {quality: quality.name for quality in Quality}

#: Named tuples built per value with ``tuple.__new__``: the generated ``__new__`` is a Python
#: function, and one call per value of it cost as much as the rest of building the value.
_new_tuple = tuple.__new__


#: A received message as queued: topic, payload, receive time (ms), broker connection index.
_Item = tuple[str, bytes, int, int]
#: Most messages handled as one batch (a backlog is worked off in steps of this size).
_BATCH_MAX = 500


@dataclass(slots=True)
class _Batch:
    """Values of the messages of one batch, not yet handed on."""

    samples: list[Sample] = field(default_factory=list)
    live: list[LiveTag] = field(default_factory=list)


class SampleSink(Protocol):
    """Where samples go (the historian writer); ``submit`` blocks when full."""

    def submit(self, samples: Sequence[Sample], timeout: float | None = None) -> bool: ...


def tag_path(group_id: str, edge_node_id: str, device_id: str | None, name: str) -> str:
    if device_id is None:
        return f"{group_id}/{edge_node_id}/{name}"
    return f"{group_id}/{edge_node_id}/{device_id}/{name}"


@dataclass(slots=True)
class IngestStats:
    messages_total: int = 0
    values_total: int = 0
    historical_values_total: int = 0
    problems_total: int = 0


class HostLink(Protocol):
    """One broker connection of the host: its own session (STATE, edge tracking) and IO."""

    session: HostApplicationSession
    session_lock: threading.Lock

    def publish(self, action: Publish) -> None: ...

    def disconnect(self) -> None: ...


class SparkplugIngest:
    def __init__(
        self,
        live_tags: LiveTagTable,
        edges: EdgeRegistry,
        history: SampleSink,
        *,
        queue_capacity: int = 10_000,
        historical_updates_live: bool = False,
        timer_interval_s: float = 0.1,
        max_future_ms: int = 300_000,
        derive: Callable[[Sequence[Sample]], None] | None = None,
        gather_s: float = 0.0,
    ) -> None:
        #: The MES service's ``offer``: live and historical samples alike (order-independent).
        self._derive = derive
        self._max_future_ms = max_future_ms
        #: When fewer than a batch are waiting, how long more may gather (settings:
        #: ingest_gather_ms); 0: none.
        self._gather_s = gather_s
        self._batch_max = min(_BATCH_MAX, queue_capacity) if queue_capacity > 0 else _BATCH_MAX
        self._links: list[HostLink] = []
        self._live = live_tags
        self._edges = edges
        self._history = history
        self._historical_updates_live = historical_updates_live
        self._timer_interval_s = timer_interval_s
        self._queue: queue.Queue[_Item | None] = queue.Queue(queue_capacity)
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self._in_progress = 0
        self.stats = IngestStats()
        self._problem_log_at: dict[str, float] = {}
        #: Tag path per (group, node, device) and metric name; "" for protocol metrics.
        self._paths: dict[tuple[str, str, str | None], dict[str, str]] = {}

    def attach(self, links: Sequence[HostLink]) -> None:
        """The host's broker connections; ``offer`` names one by its index."""
        self._links = list(links)

    # -- called from the MQTT network thread -------------------------------------------------
    def offer(self, topic: str, payload: bytes, link: int = 0) -> None:
        """Queue one message received on broker connection ``link``; blocks while the queue
        is full (back-pressure)."""
        with self._idle:
            self._in_progress += 1
        self._queue.put((topic, payload, time.time_ns() // 1_000_000, link))

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="andon-ingest", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Process everything already queued, then stop.

        Waits as long as that takes: the broker already has our acknowledgement for every
        queued message, so giving up would lose them. (A second Ctrl-C ends the process.)
        """
        if self._thread is None:
            return
        self._queue.put(None)
        while self._thread.is_alive():
            self._thread.join(10.0)
            if self._thread.is_alive():
                log.warning("still writing %d received messages before stopping", self.queue_depth)
        self._thread = None

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every message offered so far has been processed."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_progress == 0, timeout)

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    # -- the ingest thread -------------------------------------------------------------------
    def _run(self) -> None:
        next_timer = time.monotonic() + self._timer_interval_s
        stopping = False
        while not stopping:
            items, stopping = self._next_batch()
            try:
                if items:
                    self._process(items)
                if time.monotonic() >= next_timer:
                    next_timer = time.monotonic() + self._timer_interval_s
                    for link in self._links:
                        with link.session_lock:
                            actions = link.session.on_timer(time.time_ns() // 1_000_000)
                        self._handle_actions(link, actions)
            except Exception:  # a bug must not stop ingest; it is logged with its traceback
                log.exception("ingest failed; continuing")
            finally:
                if items:
                    with self._idle:
                        self._in_progress -= len(items)
                        if self._in_progress == 0:
                            self._idle.notify_all()

    def _next_batch(self) -> tuple[list[_Item], bool]:
        """The messages to handle next (none when the timer's interval passed without any),
        and whether the stop marker came after them."""
        try:
            first = self._queue.get(timeout=self._timer_interval_s)
        except queue.Empty:
            return [], False
        if first is None:
            return [], True
        items = [first]
        stopping = self._take_queued(items)
        if not stopping and len(items) < self._batch_max and self._gather_s > 0:
            # Sleep rather than wait on the queue: a waiter is woken per message.
            time.sleep(self._gather_s)
            stopping = self._take_queued(items)
        return items, stopping

    def _take_queued(self, items: list[_Item]) -> bool:
        """Move what else is queued now into ``items`` (up to a batch), without waiting: the
        messages that arrived while the last batch was handled are handled together, so their
        samples reach the historian, the MES and the live table in one call each. Returns True
        (and leaves it out) when the stop marker was among them."""
        get = self._queue.get_nowait
        while len(items) < self._batch_max:
            try:
                item = get()
            except queue.Empty:
                return False
            if item is None:
                return True
            items.append(item)
        return False

    def _process(self, items: Sequence[_Item]) -> None:
        batch = _Batch()
        for topic, payload, receive_ms, index in items:
            link = self._links[index]
            try:
                with link.session_lock:
                    actions = link.session.on_message(topic, payload, receive_ms)
                self.stats.messages_total += 1
                self._carry_out(link, actions, batch)
            except Exception:  # one bad message must not cost the others of the batch
                log.exception("ingest failed on a message; continuing")
        self._flush(batch)

    def _handle_actions(self, link: HostLink, actions: Sequence[object]) -> None:
        """The actions of one message or timer, handed on at once."""
        batch = _Batch()
        self._carry_out(link, actions, batch)
        self._flush(batch)

    def _carry_out(self, link: HostLink, actions: Sequence[object], batch: _Batch) -> None:
        for action in actions:
            if isinstance(action, MetricsReceived):
                self._on_metrics(action, batch)
                continue
            # Anything else (a death marking tags stale, a birth) applies after the values
            # received before it, as when each message was handled on its own.
            self._flush(batch)
            if isinstance(action, MetricsStale):
                prefix = (
                    f"{action.group_id}/{action.edge_node_id}"
                    if action.device_id is None
                    else f"{action.group_id}/{action.edge_node_id}/{action.device_id}"
                )
                self._live.mark_stale(prefix, action.names, action.at_ms)
            elif isinstance(action, NodeOnline):
                self._edges.node_birth(
                    action.group_id,
                    action.edge_node_id,
                    action.bd_seq,
                    action.metric_count,
                    action.at_ms,
                )
            elif isinstance(action, NodeOffline):
                self._edges.node_death(action.group_id, action.edge_node_id, action.at_ms)
            elif isinstance(action, DeviceOnline):
                self._edges.device_birth(
                    action.group_id,
                    action.edge_node_id,
                    action.device_id,
                    action.metric_count,
                    action.at_ms,
                )
            elif isinstance(action, DeviceOffline):
                self._edges.device_death(
                    action.group_id, action.edge_node_id, action.device_id, action.at_ms
                )
            elif isinstance(action, Publish):
                link.publish(action)
            elif isinstance(action, Disconnect):
                log.warning("host session: %s", action.reason)
                link.disconnect()
            elif isinstance(action, Problem):
                self._on_problem(action)

    def _flush(self, batch: _Batch) -> None:
        samples, live = batch.samples, batch.live
        if samples:
            batch.samples = []
            # Blocks while the historian's queue is full: back-pressure, never a drop.
            self._history.submit(samples)
            if self._derive is not None:
                # After the samples: the writer commits them first, so derived records never
                # exist without the history they come from (see mes_recovery).
                try:
                    self._derive(samples)
                except Exception:  # a bug there must not cost the live values
                    log.exception("MES derivation failed; the samples are in the history")
        if live:
            batch.live = []
            self._live.apply(live)

    def _on_metrics(self, action: MetricsReceived, batch: _Batch) -> None:
        samples: list[Sample] = []
        live: list[LiveTag] = []
        new_tuple = _new_tuple
        group, node, device = action.group_id, action.edge_node_id, action.device_id
        self._edges.seen(group, node, action.receive_ms)
        paths = self._paths.setdefault((group, node, device), {})
        updates_live = self._historical_updates_live
        datatype_codes = _DATATYPE_CODES
        quality_codes = _QUALITY_CODES
        add_sample = samples.append
        historical = future = 0
        future_limit = action.receive_ms + self._max_future_ms
        for metric in action.metrics:
            name = metric.name
            path = paths.get(name)
            if path is None:
                path = paths[name] = (
                    ""
                    if name.startswith(_PROTOCOL_METRICS)
                    else tag_path(group, node, device, name)
                )
            if not path:  # protocol metric
                continue
            datatype = datatype_codes.get(metric.datatype, 0)  # DataType, or None: 0
            if not metric.is_transient:
                value = metric.value
                if isinstance(value, tuple):
                    value = repr(list(value))  # arrays are kept as their text form in history
                quality = quality_codes.get(metric.quality, metric.quality)
                add_sample(
                    new_tuple(
                        Sample,
                        (path, metric.timestamp_ms, value, quality, metric.is_historical, datatype),
                    )
                )
            if metric.is_historical:
                historical += 1
                if not updates_live:
                    continue
            if metric.timestamp_ms > future_limit:
                # A clock far ahead would pin this live value: history keeps it, live does not.
                future += 1
                continue
            live.append(
                new_tuple(
                    LiveTag,
                    (
                        path,
                        metric.value,
                        datatype,
                        _QUALITY_NAMES.get(metric.quality) or Quality(metric.quality).name,
                        metric.timestamp_ms,
                        action.receive_ms,
                        True,
                    ),
                )
            )
        self.stats.historical_values_total += historical
        if future:
            self._on_problem(
                Problem(
                    "future_timestamp",
                    group,
                    node,
                    f"{future} value(s) stamped more than {self._max_future_ms} ms ahead of "
                    "this server's clock: historised, not shown live",
                )
            )
        if device is None:
            self._spool_report(action)
        self.stats.values_total += len(action.metrics)
        # Added whole, once the message is decoded: a failure above leaves none of its values.
        batch.samples += samples
        batch.live += live

    def _spool_report(self, action: MetricsReceived) -> None:
        spool = {
            m.name.removeprefix(_SPOOL_PREFIX): m.value
            for m in action.metrics
            if m.name.startswith(_SPOOL_PREFIX) and not isinstance(m.value, bytes | tuple)
        }
        if spool:
            self._edges.spool_report(action.group_id, action.edge_node_id, spool)

    def _on_problem(self, problem: Problem) -> None:
        self.stats.problems_total += 1
        self._edges.problem(problem.kind, problem.group_id, problem.edge_node_id)
        # One log line per kind and node every 10 s: bad input is counted, not a log flood.
        key = f"{problem.kind}/{problem.group_id}/{problem.edge_node_id}"
        now = time.monotonic()
        if now - self._problem_log_at.get(key, -1e9) >= 10.0:
            self._problem_log_at[key] = now
            log.warning(
                "sparkplug %s from %s/%s: %s",
                problem.kind,
                problem.group_id or "?",
                problem.edge_node_id or "?",
                problem.detail,
            )
