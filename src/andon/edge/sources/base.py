"""What every edge data source (simulator, Modbus TCP, OPC UA) offers the poller.

A source owns some devices. ``describe()`` declares each device's metrics once (the poller builds
births and aliases from it); ``poll(now_ms)`` returns the changes since the previous poll, each
stamped with the time it happened at the source (DESIGN.md §4 item 1: timestamps come from the
source, and only changes are published). ``write`` carries a command to the equipment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from andon.sparkplug.model import DataType, MetricValue

__all__ = ["Source", "TagChange", "TagSpec", "WriteResult"]


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
    """A metric took ``value`` at ``ts_ms`` (UTC milliseconds, source time)."""

    device_id: str
    name: str
    value: MetricValue
    ts_ms: int


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
