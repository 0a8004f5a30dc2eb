"""The edge's flush with rounds in flight (``SpoolFlusher``, ``flush_rounds``), driven step by
step against a recording broker client: bounded rounds in flight, records leaving the spool only
after their PUBACK, order (checklist C, S-02/S-03/S-05), and a failed PUBACK or an unsendable
record restarting the flush from the spool's head."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from andon.edge.flush import PublisherStats, SpoolFlusher
from andon.edge.flush_rounds import FlushRound, RoundPipeline
from andon.edge.poller import LastValueCache
from andon.edge.sources.base import TagChange
from andon.edge.spool import StoreAndForwardSpool
from andon.sparkplug.codec import decode_payload
from andon.sparkplug.edge_node import EdgeNodeSession
from andon.sparkplug.model import DataType, Metric, MetricValue
from andon.testing.clock import ManualClock

TS = 1_700_000_000_000
DEVICES = ("press", "oven")


@dataclass
class Sent:
    """One published data message, as the broker saw it."""

    device: str
    values: list[tuple[str, MetricValue, int, bool]]  # name, value, timestamp, is_historical
    outcome: bool | None = None  # None: no PUBACK yet; False: the session ended first


@dataclass
class RecordingTicket:
    client: RecordingClient
    sent: Sent

    def wait(self, timeout: float | None = None) -> bool:
        """The PUBACK "arrives" while the flusher waits for it, unless the test failed it."""
        self.client.before_puback(self.sent)
        if self.sent.outcome is None:
            self.sent.outcome = True
        return self.sent.outcome

    @property
    def acknowledged(self) -> bool:
        return self.sent.outcome is True

    @property
    def done(self) -> bool:
        return self.sent.outcome is not None


@dataclass
class RecordingClient:
    spool: StoreAndForwardSpool
    sent: list[Sent] = field(default_factory=list)
    most_unacknowledged: int = 0
    fail_message: int | None = None  # index in ``sent`` whose PUBACK never comes
    early_removals: list[int] = field(default_factory=list)

    def publish(
        self, topic: str, payload: bytes, qos: int = 0, retain: bool = False
    ) -> RecordingTicket:
        decoded = decode_payload(payload)
        values = [
            (str(m.name), m.value, int(m.timestamp or 0), m.is_historical) for m in decoded.metrics
        ]
        message = Sent(topic.rsplit("/", 1)[-1], values)
        if len(self.sent) == self.fail_message:
            message.outcome = False
        self.sent.append(message)
        waiting = sum(1 for s in self.sent if s.outcome is None)
        self.most_unacknowledged = max(self.most_unacknowledged, waiting)
        return RecordingTicket(self, message)

    def before_puback(self, sent: Sent) -> None:
        """Every value of a message not yet acknowledged must still be in the spool."""
        held = {(c.name, c.ts_ms) for r in self.spool.peek(1_000_000) for c in r.changes}
        if any((name, ts) not in held for name, _, ts, _ in sent.values):
            self.early_removals.append(self.sent.index(sent))


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[StoreAndForwardSpool]:
    with StoreAndForwardSpool(tmp_path / "spool.db", clock=ManualClock(TS)) as opened:
        yield opened


def _append(spool: StoreAndForwardSpool, first: int, count: int) -> None:
    """``count`` polls of every device: one record each, values A (int) and B (float)."""
    for poll in range(first, first + count):
        ts = TS + poll * 1000
        spool.append_many(
            [(d, [TagChange(d, "A", poll, ts), TagChange(d, "B", poll + 0.5, ts)]) for d in DEVICES]
        )


def _flusher(
    spool: StoreAndForwardSpool, *, in_flight: int, interleaved: bool = False
) -> tuple[SpoolFlusher, RecordingClient, EdgeNodeSession]:
    session = EdgeNodeSession("G", "N", bd_seq=None, use_aliases=False)
    session.next_will(TS)
    session.on_connected(TS)
    birth = [Metric("A", 0, DataType.INT64), Metric("B", 0.0, DataType.DOUBLE)]
    session.births([], dict.fromkeys(DEVICES, birth), TS)
    flusher = SpoolFlusher(
        session,
        threading.Lock(),
        spool,
        LastValueCache([]),
        ManualClock(TS),
        PublisherStats(),
        threading.Event(),
        batch_records=4,  # two polls of both devices
        values_per_message=2,  # one record per message: four messages per round
        flush_period_s=0.0,
        rounds_in_flight=in_flight,
        interleaved=interleaved,
        rolling_window_s=0.0,
        ack_timeout_s=1.0,
    )
    client = RecordingClient(spool)
    flusher.attach(client)  # type: ignore[arg-type]
    flusher.births_published(spool.last_id(), TS)
    return flusher, client, session


def _run(flusher: SpoolFlusher, limit: int = 1000) -> int:
    steps = 0
    while flusher.step():
        steps += 1
        assert steps < limit, "the flush never ended"
    return steps


def _delivered(client: RecordingClient) -> list[tuple[str, str, int]]:
    return [(s.device, name, ts) for s in client.sent if s.outcome for name, _, ts, _ in s.values]


def _expected(polls: range) -> set[tuple[str, str, int]]:
    return {(d, n, TS + p * 1000) for p in polls for d in DEVICES for n in ("A", "B")}


@pytest.mark.parametrize("in_flight", [1, 2, 3])
def test_s05_rounds_in_flight_are_bounded_and_records_leave_only_after_puback(
    spool: StoreAndForwardSpool, in_flight: int
) -> None:
    _append(spool, 0, 20)  # 40 records: ten rounds of four messages
    flusher, client, _ = _flusher(spool, in_flight=in_flight)
    _run(flusher)
    assert client.most_unacknowledged == 4 * in_flight
    assert not client.early_removals, "a record left the spool before its PUBACK"
    assert spool.stats().records == 0
    delivered = _delivered(client)
    assert len(delivered) == len(set(delivered)) == 80  # each value once
    assert set(delivered) == _expected(range(20))
    assert all(historical for s in client.sent for *_, historical in s.values)
    assert flusher.stats.historical_values_total == 80
    assert flusher.stats.records_published_total == 40
    assert not flusher.stats.flushing


def test_s03_in_order_history_before_live_with_rounds_in_flight(
    spool: StoreAndForwardSpool,
) -> None:
    _append(spool, 0, 6)  # the backlog
    flusher, client, _ = _flusher(spool, in_flight=3)
    steps = 0
    while flusher.step():
        steps += 1
        if steps in (1, 2, 5):  # live polls arrive while rounds are in flight
            _append(spool, 100 + steps, 1)
    flags = [historical for s in client.sent for *_, historical in s.values]
    assert flags == sorted(flags, reverse=True), "a live value went before the backlog's end"
    assert flags.count(True) == 24
    assert flags.count(False) == 12
    per_metric: dict[tuple[str, str], list[int]] = {}
    for device, name, ts in _delivered(client):
        per_metric.setdefault((device, name), []).append(ts)
    assert all(ts == sorted(set(ts)) for ts in per_metric.values())  # increasing, no repeat
    assert spool.stats().records == 0


def test_s03_interleaved_sends_live_first_and_every_record_once(
    spool: StoreAndForwardSpool,
) -> None:
    _append(spool, 0, 10)
    flusher, client, _ = _flusher(spool, in_flight=3, interleaved=True)
    steps = 0
    while flusher.step():
        steps += 1
        if steps in (1, 2, 3, 7):
            _append(spool, 100 + steps, 1)
    delivered = _delivered(client)
    assert len(delivered) == len(set(delivered))
    assert set(delivered) == _expected(range(10)) | _expected(range(101, 104)) | _expected(
        range(107, 108)
    )
    first_live = next(i for i, s in enumerate(client.sent) if not s.values[0][3])
    last_history = max(i for i, s in enumerate(client.sent) if s.values[0][3])
    assert first_live < last_history, "interleaved mode held live values behind the backlog"
    assert not client.early_removals
    assert spool.stats().records == 0


def test_a_missing_puback_drops_the_rounds_in_flight_and_resends_from_the_spool_head(
    spool: StoreAndForwardSpool,
) -> None:
    _append(spool, 0, 8)  # 16 records, four rounds
    flusher, client, _ = _flusher(spool, in_flight=2)
    client.fail_message = 2  # third message of the first round: the session "ended"
    assert flusher.step()
    assert flusher.step()
    assert len(client.sent) == 8  # two rounds published
    assert flusher.step()  # settling round 1: two PUBACKs, then none
    assert spool.stats().records == 16 - 2  # only the two acknowledged records left
    assert len(client.sent) == 8
    _run(flusher)
    assert spool.stats().records == 0
    assert not client.early_removals
    delivered = _delivered(client)
    assert len(delivered) == len(set(delivered))
    assert set(delivered) == _expected(range(8))
    # Published twice: the failed message and the rest of the two rounds in flight (six
    # messages of two values), within the bound of two rounds of four messages.
    published = [(s.device, name, ts) for s in client.sent for name, _, ts, _ in s.values]
    sent_twice = len(published) - len(set(published))
    assert sent_twice == 6 * 2
    assert sent_twice <= 2 * 4 * 2


def test_an_unsendable_record_is_dropped_and_the_flush_goes_on_from_the_head(
    spool: StoreAndForwardSpool,
) -> None:
    _append(spool, 0, 2)
    spool.append("press", [TagChange("press", "Bogus", 1, TS + 5000)])  # no birth declares it
    _append(spool, 10, 4)
    flusher, client, _ = _flusher(spool, in_flight=3)
    _run(flusher)
    assert flusher.stats.poison_records_total == 1
    assert spool.stats().records == 0
    delivered = _delivered(client)
    assert len(delivered) == len(set(delivered))
    assert set(delivered) == _expected(range(2)) | _expected(range(10, 14))
    assert not client.early_removals


def test_settle_all_empties_the_pipeline_and_keeps_only_what_was_acknowledged(
    spool: StoreAndForwardSpool,
) -> None:
    _append(spool, 0, 6)
    flusher, client, _ = _flusher(spool, in_flight=3)
    for _ in range(3):
        assert flusher.step()
    client.fail_message = None
    for sent in client.sent[6:]:
        sent.outcome = False  # the session ended before these PUBACKs
    flusher.settle_all()
    assert spool.stats().records == 12 - 6
    assert _run(flusher) > 0  # the rest goes out from the head
    assert spool.stats().records == 0


def test_round_pipeline_limits_and_a_partial_round_holds_back_the_next() -> None:
    with pytest.raises(ValueError, match="at least one"):
        RoundPipeline(0)
    pipeline = RoundPipeline(2)
    assert pipeline.has_room()
    assert pipeline.in_flight == 0
    pipeline.add([], FlushRound(), backlog_through_id=None)
    assert pipeline.has_room()
    pipeline.add([], FlushRound(complete=False), backlog_through_id=None)
    assert not pipeline.has_room()
    assert pipeline.settle_oldest(0.0) == ([], True)
    assert not pipeline.has_room(), "the partial round still holds back the next"
    assert pipeline.settle_oldest(0.0) == ([], True)
    assert pipeline.has_room()
    assert pipeline.in_flight == 0
