"""Polls the sources and puts every change in the spool before anything else sees it."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from andon.edge.sources.base import GOOD, DeviceHealth, Source, TagChange, TagSpec
from andon.edge.spool import SpoolError, StoreAndForwardSpool
from andon.sparkplug.model import DataType, MetricValue
from andon.testing.clock import Clock

__all__ = ["DeviceLoss", "LastValue", "LastValueCache", "SourcePoller"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LastValue:
    value: MetricValue
    datatype: DataType
    ts_ms: int
    quality: int = GOOD


@dataclass(frozen=True, slots=True)
class DeviceLoss:
    """A device stopped answering at ``ts_ms``; records up to ``through_id`` precede it."""

    ts_ms: int
    through_id: int


class LastValueCache:
    """The newest polled value of every metric (what a birth certificate carries), and which
    devices do not answer (what a DDEATH says)."""

    def __init__(self, sources: Sequence[Source]) -> None:
        self._lock = threading.Lock()
        self._devices: dict[str, dict[str, LastValue]] = {}
        self._specs: dict[str, dict[str, TagSpec]] = {}
        for source in sources:
            for device_id, specs in source.describe().items():
                self._specs[device_id] = {spec.name: spec for spec in specs}
        self._lost: dict[str, DeviceLoss] = {}
        self._primed = threading.Event()

    def update(self, changes: Sequence[TagChange]) -> None:
        with self._lock:
            for change in changes:
                spec = self._specs.get(change.device_id, {}).get(change.name)
                if spec is None:
                    continue  # a source reporting an undeclared metric; the spool keeps it
                values = self._devices.setdefault(change.device_id, {})
                held = values.get(change.name)
                if held is None or change.ts_ms >= held.ts_ms:
                    values[change.name] = LastValue(
                        change.value, spec.datatype, change.ts_ms, change.quality
                    )
            self._check_primed()

    def set_online(self, states: Mapping[str, bool], now_ms: int, through_id: int) -> None:
        """Record which devices answer; call after the changes polled with it are spooled."""
        with self._lock:
            for device, online in states.items():
                if device not in self._specs:
                    continue
                if online:
                    self._lost.pop(device, None)
                elif device not in self._lost:
                    self._lost[device] = DeviceLoss(now_ms, through_id)
            self._check_primed()

    def _check_primed(self) -> None:
        if all(
            d in self._lost or len(self._devices.get(d, {})) == len(specs)
            for d, specs in self._specs.items()
        ):
            self._primed.set()

    def wait_primed(self, timeout: float) -> bool:
        """True once every declared metric of every answering device has a polled value."""
        return self._primed.wait(timeout)

    def ready(self, device_id: str) -> bool:
        """The device answers and every metric of it has a value: it can be born."""
        with self._lock:
            return device_id not in self._lost and len(self._devices.get(device_id, {})) == len(
                self._specs.get(device_id, {})
            )

    def lost(self) -> dict[str, DeviceLoss]:
        with self._lock:
            return dict(self._lost)

    def specs(self, device_id: str) -> dict[str, TagSpec]:
        return self._specs.get(device_id, {})

    def device_ids(self) -> list[str]:
        return sorted(self._specs)

    def snapshot(self) -> dict[str, dict[str, LastValue]]:
        with self._lock:
            return {device: dict(values) for device, values in self._devices.items()}


class SourcePoller:
    """One thread: poll every source on an interval, append the changes to the spool durably,
    then update the last-value cache and wake the publisher."""

    def __init__(
        self,
        sources: Sequence[Source],
        spool: StoreAndForwardSpool,
        last_values: LastValueCache,
        clock: Clock,
        *,
        interval_s: float,
        on_appended: Callable[[], None],
        limits_every_s: float = 30.0,
        max_held_values: int = 1_000_000,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        self._sources = sources
        self._spool = spool
        self._last_values = last_values
        self._clock = clock
        self._interval_s = interval_s
        self._on_appended = on_appended
        self._limits_every_s = limits_every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.polls_total = 0
        self.values_total = 0
        self.errors_total = 0
        self.dropped_values_total = 0
        self.source_errors_total = 0
        self._max_held_values = max_held_values
        self._on_tick = on_tick
        self._held: list[tuple[str | None, list[TagChange]]] = []

    def poll_once(self) -> int:
        """Poll every source once; returns the number of changes spooled.

        Raises ``SpoolError`` when the spool cannot take the changes; they are then held in
        memory (bounded) and retried first on the next poll, since a source reports a change
        only once.
        """
        now_ms = self._clock.now_ms()
        batches: dict[str, list[TagChange]] = defaultdict(list)
        online: dict[str, bool] = {}
        for source in self._sources:
            try:
                changes = source.poll(now_ms)
                # Read after poll(): a change returned above precedes the device's loss.
                if isinstance(source, DeviceHealth):
                    online.update(source.device_online())
            except Exception as exc:  # one failing source must not stop the others or polling
                self.source_errors_total += 1
                log.warning("polling %s failed: %s", type(source).__name__, exc)
                continue
            for change in changes:
                batches[change.device_id].append(change)
        self.polls_total += 1
        waiting: list[tuple[str | None, list[TagChange]]] = [*self._held, *batches.items()]
        if not waiting:
            if online:
                self._last_values.set_online(online, now_ms, self._spool.last_id())
            return 0
        try:
            # Durable first: the cache (and so a birth) never shows a value the spool lacks.
            self._spool.append_many(waiting)
        except SpoolError:
            self._hold(waiting)
            raise
        self._held = []
        count = sum(len(changes) for _, changes in waiting)
        self.values_total += count
        for _, changes in waiting:
            self._last_values.update(changes)
        if online:
            self._last_values.set_online(online, now_ms, self._spool.last_id())
        self._on_appended()
        return count

    def _hold(self, waiting: list[tuple[str | None, list[TagChange]]]) -> None:
        total = sum(len(changes) for _, changes in waiting)
        while waiting and total > self._max_held_values:
            _, dropped = waiting.pop(0)
            total -= len(dropped)
            self.dropped_values_total += len(dropped)
            log.error(
                "spool unavailable: dropped the oldest %d values held in memory (%d kept)",
                len(dropped),
                total,
            )
        self._held = waiting

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="andon-edge-poller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        next_limits = self._clock.monotonic() + self._limits_every_s
        failing = False
        while not self._stop.is_set():
            started = self._clock.monotonic()
            try:
                self.poll_once()
                if started >= next_limits:
                    # Age limits otherwise apply only on append.
                    self._spool.enforce_limits()
                    next_limits = started + self._limits_every_s
                if failing:
                    log.info("polling recovered")
                    failing = False
            except Exception as exc:  # SpoolError or a bug: log it, keep polling
                self.errors_total += 1
                if not failing:
                    log.error("polling failed: %s; retrying every poll", exc, exc_info=True)
                    failing = True
            if self._on_tick is not None:
                try:
                    self._on_tick()
                except Exception:  # housekeeping must never stop polling
                    log.exception("edge housekeeping failed")
            elapsed = self._clock.monotonic() - started
            self._stop.wait(max(0.0, self._interval_s - elapsed))
