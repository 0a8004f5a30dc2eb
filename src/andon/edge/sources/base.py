"""What every edge data source (simulator, Modbus TCP, OPC UA) offers the poller.

A source owns some devices. ``describe()`` declares each device's metrics once (the poller builds
births and aliases from it); ``poll(now_ms)`` returns the changes since the previous poll, each
stamped with the time it happened at the source (DESIGN.md §4 item 1: timestamps come from the
source, and only changes are published). ``write`` carries a command to the equipment.

A source of real equipment also says which of its devices answer (``DeviceHealth``): the poller
records it in order with the changes, and the publisher turns a lost device into a DDEATH and a
device that answers again into a DBIRTH (SPARKPLUG.md checklist E-10).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from andon.sparkplug.model import DataType, MetricValue, Quality

__all__ = [
    "GOOD",
    "OUTCOME_UNKNOWN",
    "ChangeBuffer",
    "DeviceHealth",
    "Source",
    "Startable",
    "TagChange",
    "TagSpec",
    "WriteResult",
]

log = logging.getLogger(__name__)

#: Sparkplug ``Quality`` of a value read without trouble (the default of every change).
GOOD = int(Quality.GOOD)
#: Starts the reason of a command whose effect is unknown (``WriteResult.unknown``): the host
#: reads it as "not confirmed", not as "refused".
OUTCOME_UNKNOWN = "outcome unknown"


@dataclass(frozen=True, slots=True)
class TagSpec:
    """One metric of a device: Sparkplug name, datatype, value before the first poll, unit."""

    name: str
    datatype: DataType
    initial_value: MetricValue
    unit: str | None = None
    writable: bool = False
    description: str = ""


@dataclass(frozen=True, slots=True)
class TagChange:
    """A metric took ``value`` at ``ts_ms`` (UTC milliseconds, source time).

    ``quality`` is the Sparkplug ``Quality`` property: 192 GOOD, 0 BAD, 500 STALE.
    """

    device_id: str
    name: str
    value: MetricValue
    ts_ms: int
    quality: int = GOOD


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Outcome of a command; ``reason`` says why a rejected write was refused."""

    accepted: bool
    reason: str = ""

    @classmethod
    def ok(cls) -> WriteResult:
        return cls(True)

    @classmethod
    def rejected(cls, reason: str) -> WriteResult:
        return cls(False, reason)

    @classmethod
    def unknown(cls, reason: str) -> WriteResult:
        """Not confirmed, and maybe applied all the same (e.g. the device did not answer in
        time): reported to the host with ``OUTCOME_UNKNOWN``, which it takes as no answer,
        not as a refusal."""
        return cls(False, f"{OUTCOME_UNKNOWN}: {reason}")


class Source(Protocol):
    """A set of devices the edge agent polls."""

    def describe(self) -> Mapping[str, Sequence[TagSpec]]:
        """Every device id and its metrics; stable for the life of the source."""
        ...

    def poll(self, now_ms: int) -> list[TagChange]:
        """Changes since the previous poll, in timestamp order, none later than ``now_ms``."""
        ...

    def write(self, device_id: str, name: str, value: MetricValue) -> WriteResult:
        """Apply a command to a metric, or say why not. Never raises for a bad request."""
        ...


@runtime_checkable
class DeviceHealth(Protocol):
    """A source whose devices can stop answering (real equipment, unlike the simulator)."""

    def device_online(self) -> Mapping[str, bool]:
        """Whether each device answers now.

        Read by the poller right after ``poll``: every change of a device returned before it
        goes offline is spooled before the device is marked offline, so its DDEATH follows its
        last data. A device coming online returns all its current values by the next ``poll``.
        """
        ...


@runtime_checkable
class Startable(Protocol):
    """A source with its own threads (connections to equipment), started with the agent."""

    def start(self) -> None: ...

    def stop(self, timeout: float = 5.0) -> None: ...


class ChangeBuffer:
    """Bounded, thread-safe hand-over from a source's own threads to the synchronous ``poll``.

    Device threads (or an asyncio loop) ``push`` changes and set a device ``online``; the
    poller's ``drain`` takes the changes and, in the same step, the online states that
    ``device_online`` then reports. So a device that came back is reported online only together
    with the values pushed before it (its DBIRTH never shows older values), and one that was
    lost only after its last changes. Overflow drops the oldest changes, counted and logged.
    """

    def __init__(self, devices: Iterable[str], max_changes: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._changes: deque[TagChange] = deque()
        self._max = max_changes
        self._online = dict.fromkeys(devices, False)
        self._drained_online = dict(self._online)
        self.dropped_total = 0

    def push(self, changes: Iterable[TagChange], *, online: str | None = None) -> None:
        """Queue ``changes``; with ``online``, mark that device answering after them."""
        with self._lock:
            self._changes.extend(changes)
            overflow = len(self._changes) - self._max
            if overflow > 0:
                for _ in range(overflow):
                    self._changes.popleft()
                self.dropped_total += overflow
                log.error("source buffer full: dropped the %d oldest changes", overflow)
            if online is not None:
                self._online[online] = True

    def lost(self, device_id: str) -> None:
        with self._lock:
            self._online[device_id] = False

    def is_online(self, device_id: str) -> bool:
        with self._lock:
            return self._online.get(device_id, False)

    def drain(self) -> list[TagChange]:
        with self._lock:
            out = list(self._changes)
            self._changes.clear()
            self._drained_online = dict(self._online)
        out.sort(key=lambda change: change.ts_ms)  # stable: a tag's changes keep their order
        return out

    def online(self) -> dict[str, bool]:
        """The states as of the last ``drain``."""
        with self._lock:
            return dict(self._drained_online)
