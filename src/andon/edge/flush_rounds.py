"""The publish rounds of the edge's flush: which spool records go next, packed into messages,
and the rounds in flight until the broker acknowledged them.

A round is up to ``flush_batch_records`` spool records, packed into NDATA/DDATA messages of one
device each (``pack``). Up to ``flush_rounds_in_flight`` rounds are published before the oldest
one's PUBACKs are awaited: the edge reads, encodes and publishes the next round while the
acknowledgements of the earlier ones travel, so a round trip to the broker no longer stalls the
flush (it did, one round at a time, most of all over a slow link). Rounds are settled oldest first
and a record still leaves the spool only after its message's PUBACK; the first message that was
not acknowledged drops every round in flight (their records stay in the spool and are sent
again, from the spool's head). A crash therefore sends again at most the rounds in flight.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from andon.edge.spool import SpoolRecord, StoreAndForwardSpool
from andon.mqtt.interface import PublishTicket
from andon.sparkplug.model import MetricValue, PropertyValue

__all__ = ["FlushRound", "OutgoingMessage", "RoundPipeline", "pack"]

_QUALITY = "Quality"


@dataclass(slots=True)
class OutgoingMessage:
    """Spool records of one device that go out as one NDATA/DDATA."""

    device_id: str | None
    historical: bool
    records: list[SpoolRecord] = field(default_factory=list)
    values: int = 0

    def columns(
        self,
    ) -> tuple[list[str], list[MetricValue], list[int], dict[int, dict[str, PropertyValue]]]:
        """Names, values, timestamps and (by index) properties of every value, in order.

        A value's only property is ``Quality``, and only when it is not GOOD (the host's
        default), as in the records' own columns.
        """
        names: list[str] = []
        values: list[MetricValue] = []
        timestamps: list[int] = []
        properties: dict[int, dict[str, PropertyValue]] = {}
        for record in self.records:
            columns = record.columns
            offset = len(names)
            for index, quality in columns.qualities.items():
                properties[offset + index] = {_QUALITY: quality}
            names += columns.names
            values += columns.values
            timestamps += columns.timestamps
        return names, values, timestamps, properties


def pack(
    records: Sequence[SpoolRecord],
    values_per_message: int,
    is_historical: Callable[[SpoolRecord], bool],
) -> list[OutgoingMessage]:
    """Group records into messages of one device, up to ``values_per_message`` values.

    A backlog of small records (one poll of one device each) would otherwise cost one MQTT
    round trip per record. Records of a device keep their order across its messages.
    """
    messages: list[OutgoingMessage] = []
    open_by_device: dict[tuple[str | None, bool], OutgoingMessage] = {}
    for record in records:
        key = (record.device_id or None, is_historical(record))
        message = open_by_device.get(key)
        if message is None or message.values + record.value_count > values_per_message:
            message = open_by_device[key] = OutgoingMessage(*key)
            messages.append(message)
        message.records.append(record)
        message.values += record.value_count
    return messages


@dataclass(slots=True)
class FlushRound:
    """The messages of one round in publish order, each with its ticket."""

    sent: list[tuple[OutgoingMessage, PublishTicket]] = field(default_factory=list)
    #: False when a message could not be encoded and the rest of the round was not published.
    complete: bool = True


class RoundPipeline:
    """The rounds in flight, oldest first, and where in the spool the next round starts.

    The next round starts past the records of the rounds in flight (two positions in
    interleaved mode: the live data and the backlog); with nothing in flight, at the spool's
    head. A round that was not published completely holds back the next ones until every round
    in flight is settled, since its unsent records lie behind those positions.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("at least one round must be allowed in flight")
        self.limit = limit
        self._rounds: deque[FlushRound] = deque()
        self._after_id: int | None = None  # in-order: all records; interleaved: the backlog
        self._live_after_id: int | None = None  # interleaved: the live records

    @property
    def in_flight(self) -> int:
        return len(self._rounds)

    def has_room(self) -> bool:
        return len(self._rounds) < self.limit and all(r.complete for r in self._rounds)

    def next_records(
        self,
        spool: StoreAndForwardSpool,
        batch_records: int,
        backlog_through_id: int,
        *,
        interleaved: bool,
    ) -> list[SpoolRecord]:
        """The records of the next round, in the order they are to be packed.

        In-order mode takes the oldest records, so live values wait behind the backlog.
        Interleaved mode takes what was spooled since the births first, then one batch of the
        backlog, so live values are not delayed by a long flush.
        """
        if not interleaved:
            return spool.peek(batch_records, after_id=self._after_id)
        live_after = max(backlog_through_id, self._live_after_id or 0)
        live = spool.peek(batch_records, after_id=live_after)
        backlog = [
            r
            for r in spool.peek(batch_records, after_id=self._after_id)
            if r.id <= backlog_through_id
        ]
        return live + backlog

    def add(
        self,
        records: Sequence[SpoolRecord],
        flush_round: FlushRound,
        *,
        backlog_through_id: int | None,
    ) -> None:
        """Put a published round in flight; ``records`` are those ``next_records`` gave it.

        ``backlog_through_id``: in interleaved mode, the backlog's last id (the records above
        it are live data, with a position of their own); None in in-order mode.
        """
        self._rounds.append(flush_round)
        if not records:
            return
        if backlog_through_id is None:
            self._after_id = records[-1].id
            return
        backlog = [r.id for r in records if r.id <= backlog_through_id]
        live = [r.id for r in records if r.id > backlog_through_id]
        if backlog:
            self._after_id = max(backlog)
        if live:
            self._live_after_id = max(live)

    def settle_oldest(self, timeout_s: float) -> tuple[list[OutgoingMessage], bool]:
        """Wait for the oldest round's PUBACKs, in publish order, and take it out of flight.

        Returns the acknowledged messages (a prefix of the round) and whether every one was;
        when one was not, the session ended (or the broker never answered): every round in
        flight is dropped, to be sent again from the spool.
        """
        oldest = self._rounds.popleft()
        acknowledged: list[OutgoingMessage] = []
        for message, ticket in oldest.sent:
            if not ticket.wait(timeout_s):
                self.clear()
                return acknowledged, False
            acknowledged.append(message)
        if not self._rounds:
            self.clear()
        return acknowledged, True

    def clear(self) -> None:
        """Forget every round in flight; the next round starts at the spool's head."""
        self._rounds.clear()
        self._after_id = self._live_after_id = None
