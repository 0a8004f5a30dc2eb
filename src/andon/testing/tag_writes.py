"""Writes to equipment in memory: the same checks and answers as the server's ``TagWriter``.

``InMemoryTagWriter`` stands for one edge node on one broker: its devices are those of an edge
``Source`` (the plant simulator, say), commands go straight to the source's ``write``, and the
echo comes from the source's next poll, as an Andon edge would publish it. The broker, the node
and each device can be taken offline; fence epochs are checked as an Andon edge checks them.
``tests/contract/test_tag_writer_contract.py`` holds it to the real writer's behaviour.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from andon.edge.publisher import COMMAND_ERROR_METRIC, COMMANDS_REJECTED_METRIC
from andon.edge.sources.base import OUTCOME_UNKNOWN, Source, TagSpec
from andon.server.tag_writes import (
    BeforeSend,
    EpochProvider,
    LiveValue,
    NoBrokerOnlineError,
    TagNotWritableError,
    TagOfflineError,
    TagWriteOutcome,
    UnknownTagError,
    WriteResult,
    coerce_write_value,
    echoes,
    split_tag_path,
)
from andon.sparkplug.model import MetricValue
from andon.testing.clock import Clock, SystemClock

__all__ = ["InMemoryTagWriter", "SentCommand"]

#: Polls of the source after an accepted write before it counts as unanswered.
_POLLS_FOR_ECHO = 3


@dataclass(frozen=True, slots=True)
class SentCommand:
    """A command that reached the (in-memory) edge."""

    device_id: str
    name: str
    value: MetricValue
    fence_epoch: int | None


class InMemoryTagWriter:
    """One edge node ``group_id/edge_node_id`` whose devices are ``source``'s."""

    def __init__(
        self,
        source: Source,
        *,
        group_id: str = "Plant",
        edge_node_id: str = "Edge1",
        clock: Clock | None = None,
    ) -> None:
        self.group_id = group_id
        self.edge_node_id = edge_node_id
        self._source = source
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._specs: dict[tuple[str, str], TagSpec] = {
            (device, spec.name): spec
            for device, specs in source.describe().items()
            for spec in specs
        }
        self._values: dict[tuple[str, str], MetricValue] = {
            key: spec.initial_value for key, spec in self._specs.items()
        }
        self._poll_ms = self._clock.now_ms()
        self.broker_online = True
        self.node_online = True
        self.offline_devices: set[str] = set()
        self.highest_fence_epoch: int | None = None
        #: Every command the edge received, in order.
        self.sent: list[SentCommand] = []
        self._poll()

    def path(self, device_id: str, name: str) -> str:
        return f"{self.group_id}/{self.edge_node_id}/{device_id}/{name}"

    def value(self, path: str) -> LiveValue:
        """The tag's current value (as the live table would hold it)."""
        with self._lock:
            key = self._key(path)
            if key is None:
                raise UnknownTagError(f"no tag {path!r}")
            return self._values[key]

    def write(
        self,
        path: str,
        value: object,
        *,
        epoch_provider: EpochProvider | None = None,
        before_send: BeforeSend | None = None,
    ) -> TagWriteOutcome:
        with self._lock:
            key = self._key(path)
            node_prefix = f"{self.group_id}/{self.edge_node_id}/"
            if key is None:
                if path in (
                    node_prefix + COMMAND_ERROR_METRIC,
                    node_prefix + COMMANDS_REJECTED_METRIC,
                ):
                    raise TagNotWritableError(
                        f"{path} is a metric of the edge node itself; only device metrics "
                        "can be written"
                    )
                raise UnknownTagError(f"no tag {path!r}")
            if not self.broker_online:
                raise NoBrokerOnlineError("no broker connection is online: nothing can be sent")
            spec = self._specs[key]
            if not spec.writable:
                raise TagNotWritableError(f"{path} is read-only (its birth says so)")
            requested = coerce_write_value(spec.datatype, value)
            device, name = key
            if not self.node_online:
                raise TagOfflineError(
                    f"edge node {self.group_id}/{self.edge_node_id} is offline: nothing was sent"
                )
            if device in self.offline_devices:
                raise TagOfflineError(
                    f"device {device} of {self.group_id}/{self.edge_node_id} is offline: "
                    "nothing was sent"
                )
            epoch = epoch_provider() if epoch_provider is not None else None
            previous = self._values[key]
            if before_send is not None:
                before_send(previous, requested, epoch)
            self.sent.append(SentCommand(device, name, requested, epoch))
            error = self._edge_refusal(device, name, requested, epoch)
            if error is not None:
                result: WriteResult = "timeout" if OUTCOME_UNKNOWN in error else "rejected"
                return TagWriteOutcome(path, requested, result, previous, previous, error, epoch)
            for _ in range(_POLLS_FOR_ECHO):
                changed = self._poll()
                if key in changed and echoes(spec.datatype, requested, changed[key]):
                    return TagWriteOutcome(
                        path, requested, "written", changed[key], previous, None, epoch
                    )
            current = self._values[key]
            if echoes(spec.datatype, requested, current):
                return TagWriteOutcome(path, requested, "written", current, previous, None, epoch)
            error = f"no answer from the edge (the tag reads {current!r})"
            return TagWriteOutcome(path, requested, "timeout", current, previous, error, epoch)

    def _edge_refusal(
        self, device: str, name: str, value: MetricValue, epoch: int | None
    ) -> str | None:
        """What an Andon edge answers in ``Andon/Command/LastError``, None when it wrote."""
        highest = self.highest_fence_epoch
        if epoch is not None and highest is not None and epoch < highest:
            return f"{device}: fence epoch {epoch} is below the highest seen {highest}"
        if epoch is not None:
            self.highest_fence_epoch = epoch if highest is None else max(epoch, highest)
        result = self._source.write(device, name, value)
        return None if result.accepted else f"{device}/{name}: {result.reason}"

    def _key(self, path: str) -> tuple[str, str] | None:
        parts = split_tag_path(path)
        if parts is None or parts[:2] != (self.group_id, self.edge_node_id):
            return None
        key = (parts[2], parts[3])
        return key if key in self._specs else None

    def _poll(self) -> dict[tuple[str, str], MetricValue]:
        """One poll of the source, 1 ms (or more) after the previous one: its changes."""
        self._poll_ms = max(self._clock.now_ms(), self._poll_ms + 1)
        changed: dict[tuple[str, str], MetricValue] = {}
        for change in self._source.poll(self._poll_ms):
            changed[(change.device_id, change.name)] = change.value
        self._values.update(changed)
        return changed
