"""Writes to equipment from the server (``POST /api/v1/tags/write``).

A write names a tag by its path (group/edge node/device/metric, as in ``/api/v1/tags``). The
current births decide before anything is sent: the tag must exist (``UnknownTagError``), be a
device metric its birth does not mark read-only (``TagNotWritableError``), take the value's type
(``TagValueError``), and its edge node and device must be online (``TagOfflineError``); with no
broker connection online nothing can be sent (``NoBrokerOnlineError``). The DCMD then goes out
on a broker connection where the node is born, with the fence epoch when one is given, and the
writer waits, bounded, for the edge's answer: the DDATA echo of the new value ("written"), the
edge's error metric naming this tag ("rejected"), or nothing ("timeout"). An edge that could
not tell whether the equipment took the value (an OPC UA write that timed out) says so with
``OUTCOME_UNKNOWN`` in its error: that is "timeout" too, never "rejected".

``before_send`` runs once every check has passed, right before the command goes out (the API
writes the audit entry of the request there): if it raises, nothing is sent.
"""

from __future__ import annotations

import logging
import math
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from andon.edge.publisher import COMMAND_ERROR_METRIC
from andon.edge.sources.base import OUTCOME_UNKNOWN
from andon.server.live_tags import LiveTag, LiveTagTable
from andon.sparkplug.actions import Publish
from andon.sparkplug.errors import PayloadError, SessionError
from andon.sparkplug.host import CommandTarget, HostApplicationSession
from andon.sparkplug.model import INTEGER_RANGES, DataType, Metric, MetricValue

__all__ = [
    "BeforeSend",
    "CommandLink",
    "EpochProvider",
    "LiveValue",
    "NoBrokerOnlineError",
    "TagNotWritableError",
    "TagOfflineError",
    "TagValueError",
    "TagWriteError",
    "TagWriteFunction",
    "TagWriteOutcome",
    "TagWriter",
    "UnknownTagError",
    "WriteResult",
    "coerce_write_value",
    "echoes",
    "split_tag_path",
]

log = logging.getLogger(__name__)

WriteResult = Literal["written", "rejected", "timeout"]
#: A value as the live table holds it (arrays as tuples).
LiveValue = bool | int | float | str | bytes | tuple[object, ...] | None
#: The fence epoch of the domain that owns the asset, None without a cluster (DESIGN.md §5).
EpochProvider = Callable[[], int | None]

_FLOAT32_MAX = struct.unpack(">f", b"\x7f\x7f\xff\xff")[0]
_TEXT_TYPES = frozenset({DataType.STRING, DataType.TEXT, DataType.UUID})
_DATATYPES = {int(datatype): datatype for datatype in DataType}


class TagWriteError(Exception):
    """A write refused before anything was sent to the equipment."""


class UnknownTagError(TagWriteError):
    """No such tag."""


class TagNotWritableError(TagWriteError):
    """The tag accepts no writes (read-only in its birth, or a metric of the edge node)."""


class TagValueError(TagWriteError):
    """The value does not fit the tag's datatype."""


class TagOfflineError(TagWriteError):
    """The tag's edge node or device is offline (NDEATH/DDEATH) or has no current birth."""


class NoBrokerOnlineError(TagWriteError):
    """No broker connection is online: no command can be sent."""


@dataclass(frozen=True, slots=True)
class TagWriteOutcome:
    """What became of a write that was sent.

    ``value`` is the tag's value afterwards: the echo when written, else its live value.
    """

    path: str
    requested: MetricValue
    result: WriteResult
    value: LiveValue
    previous: LiveValue
    error: str | None = None
    fence_epoch: int | None = None


#: Called with (value before, value to send, fence epoch) right before a command goes out;
#: an exception from it stops the write, and nothing is sent.
BeforeSend = Callable[[LiveValue, MetricValue, int | None], None]


class TagWriteFunction(Protocol):
    """``write(path, value, before_send=...)``, as the API calls it."""

    def __call__(
        self, path: str, value: object, *, before_send: BeforeSend | None = None
    ) -> TagWriteOutcome: ...


class CommandLink(Protocol):
    """A broker connection of the host (``HostConnection``) as the writer uses it."""

    session: HostApplicationSession
    session_lock: threading.Lock

    @property
    def online(self) -> bool: ...

    def publish(self, action: Publish) -> None: ...


def split_tag_path(path: str) -> tuple[str, str, str, str] | None:
    """(group, edge node, device, metric) of a device tag path, None for fewer than 4 parts.

    IDs never contain ``/``; the metric name may (``Setpoint/Speed``).
    """
    parts = path.split("/", 3)
    if len(parts) < 4 or not all(parts):
        return None
    return parts[0], parts[1], parts[2], parts[3]


def coerce_write_value(datatype: DataType, value: object) -> MetricValue:
    """``value`` (from JSON) as a value of ``datatype``; TagValueError when it does not fit.

    Strict: a boolean is no number, a string no number; an integral float is an integer.
    """
    name = datatype.name
    if value is None:
        raise TagValueError("value: null cannot be written")
    if datatype is DataType.BOOLEAN:
        if isinstance(value, bool):
            return value
        raise TagValueError(f"value: {name} needs true or false, got {value!r}")
    if datatype in _TEXT_TYPES:
        if isinstance(value, str):
            return value
        raise TagValueError(f"value: {name} needs a string, got {value!r}")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if datatype in INTEGER_RANGES:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not number or not isinstance(value, int):
            raise TagValueError(f"value: {name} needs an integer, got {value!r}")
        low, high = INTEGER_RANGES[datatype]
        if not low <= value <= high:
            raise TagValueError(f"value: {name} holds {low}..{high}, got {value}")
        return value
    if datatype in (DataType.FLOAT, DataType.DOUBLE):
        if not number:
            raise TagValueError(f"value: {name} needs a number, got {value!r}")
        result = float(value)  # type: ignore[arg-type]
        if not math.isfinite(result):
            raise TagValueError(f"value: {name} needs a finite number, got {value!r}")
        if datatype is DataType.FLOAT and abs(result) > _FLOAT32_MAX:
            raise TagValueError(f"value: {value!r} does not fit a 32-bit Float")
        return result
    raise TagValueError(f"tags of datatype {name} cannot be written through the API")


def echoes(datatype: DataType, requested: MetricValue, got: object) -> bool:
    """Whether ``got`` is the value ``requested`` came back as.

    Floats compare to 6 significant digits: a 32-bit Float, or a scaled register, does not
    give the requested double back bit for bit.
    """
    if datatype in (DataType.FLOAT, DataType.DOUBLE):
        if not isinstance(got, int | float) or isinstance(got, bool):
            return False
        assert isinstance(requested, float)
        return math.isclose(got, requested, rel_tol=1e-6, abs_tol=1e-9)
    return type(got) is type(requested) and got == requested


class _Answer:
    """Listens to the live table for the edge's answer to one command."""

    def __init__(self, path: str, error_path: str, device: str, name: str) -> None:
        self.path = path
        self.error_path = error_path
        self._error_prefixes = (f"{device}/{name}: ", f"{device}: ")
        self.datatype = DataType.UNKNOWN
        self.requested: MetricValue = None
        self.result: WriteResult | None = None
        self.value: LiveValue = None
        self.error: str | None = None
        self._done = threading.Event()

    def on_changes(self, tags: Sequence[LiveTag]) -> None:
        """Runs on the ingest thread: only compares and records."""
        if self._done.is_set():
            return
        for tag in tags:
            if tag.path == self.path:
                if tag.stale:
                    self._finish("timeout", tag.value, "the device went offline before answering")
                elif echoes(self.datatype, self.requested, tag.value):
                    self._finish("written", tag.value, None)
            elif (
                tag.path == self.error_path
                and isinstance(tag.value, str)
                and tag.value.startswith(self._error_prefixes)
            ):
                # The edge could not tell whether the equipment took the value: unconfirmed.
                unknown = OUTCOME_UNKNOWN in tag.value
                self._finish("timeout" if unknown else "rejected", None, tag.value)

    def _finish(self, result: WriteResult, value: LiveValue, error: str | None) -> None:
        self.result, self.value, self.error = result, value, error
        self._done.set()

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout)


class TagWriter:
    """Checks writes against the births, sends them as DCMD and waits for the edge's answer."""

    def __init__(
        self,
        links: Sequence[CommandLink],
        live_tags: LiveTagTable,
        *,
        timeout_s: float = 5.0,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._links = links
        self._live = live_tags
        self.timeout_s = timeout_s
        self._clock_ms = clock_ms

    def write(
        self,
        path: str,
        value: object,
        *,
        epoch_provider: EpochProvider | None = None,
        before_send: BeforeSend | None = None,
    ) -> TagWriteOutcome:
        """Send ``value`` to the tag at ``path``; TagWriteError when refused before sending."""
        if self._live.get(path) is None:
            raise UnknownTagError(f"no tag {path!r}")
        online = [link for link in self._links if link.online]
        if not online:
            raise NoBrokerOnlineError("no broker connection is online: nothing can be sent")
        link, target, (group, node, device, name) = self._target(online, path)
        if target.read_only:
            raise TagNotWritableError(f"{path} is read-only (its birth says so)")
        requested = coerce_write_value(target.datatype, value)
        if not target.node_online:
            raise TagOfflineError(f"edge node {group}/{node} is offline: nothing was sent")
        if not target.device_online:
            raise TagOfflineError(f"device {device} of {group}/{node} is offline: nothing was sent")
        epoch = epoch_provider() if epoch_provider is not None else None
        answer = _Answer(path, f"{group}/{node}/{COMMAND_ERROR_METRIC}", device, name)
        answer.datatype, answer.requested = target.datatype, requested
        remove = self._live.add_listener(answer.on_changes)
        try:
            held = self._live.get(path)
            previous = held.value if held is not None else None
            try:
                with link.session_lock:
                    command = link.session.command(
                        group,
                        node,
                        device,
                        [Metric(name, requested)],
                        self._clock_ms(),
                        fence_epoch=epoch,
                    )
            except SessionError as exc:  # the birth went away since the checks above
                raise TagOfflineError(f"{path}: {exc}; nothing was sent") from exc
            except PayloadError as exc:
                raise TagValueError(f"value: {exc}") from exc
            if before_send is not None:
                before_send(previous, requested, epoch)
            link.publish(command)
            answered = answer.wait(self.timeout_s)
        finally:
            remove()
        outcome = self._outcome(path, requested, previous, epoch, answer if answered else None)
        log.info(
            "write %s = %r: %s%s",
            path,
            requested,
            outcome.result,
            f" ({outcome.error})" if outcome.error else "",
        )
        return outcome

    def _target(
        self, online: Sequence[CommandLink], path: str
    ) -> tuple[CommandLink, CommandTarget, tuple[str, str, str, str]]:
        """The broker connection to send on (one where the target is online, else any that
        knows it, for the error) and what the birth says; TagWriteError when none fits."""
        parts = split_tag_path(path)
        head = path.split("/", 2)
        known: list[tuple[CommandLink, CommandTarget]] = []
        for link in online:
            with link.session_lock:
                target = link.session.command_target(*parts) if parts is not None else None
                node_metric = (
                    link.session.command_target(head[0], head[1], None, head[2])
                    if len(head) == 3
                    else None
                )
            if target is None:
                if node_metric is not None:
                    raise TagNotWritableError(
                        f"{path} is a metric of the edge node itself; only device metrics "
                        "can be written"
                    )
                continue
            if target.node_online and target.device_online:
                known.insert(0, (link, target))
                break
            known.append((link, target))
        if not known or parts is None:
            raise TagOfflineError(
                f"{path} has no current birth on an online broker connection: nothing was sent"
            )
        return known[0][0], known[0][1], parts

    def _outcome(
        self,
        path: str,
        requested: MetricValue,
        previous: LiveValue,
        epoch: int | None,
        answer: _Answer | None,
    ) -> TagWriteOutcome:
        held = self._live.get(path)
        current = held.value if held is not None else None
        if answer is not None and answer.result is not None:
            value = answer.value if answer.result == "written" else current
            return TagWriteOutcome(
                path, requested, answer.result, value, previous, answer.error, epoch
            )
        datatype = _DATATYPES.get(held.datatype, DataType.UNKNOWN) if held else DataType.UNKNOWN
        if held is not None and not held.stale and echoes(datatype, requested, current):
            # The tag already held the value: the edge reports no change, and it reported no
            # error within the timeout either.
            return TagWriteOutcome(path, requested, "written", current, previous, None, epoch)
        error = f"no answer from the edge within {self.timeout_s:g} s (the tag reads {current!r})"
        return TagWriteOutcome(path, requested, "timeout", current, previous, error, epoch)
