"""The ingest thread handles what is queued as one batch, in the order it was received.

Messages are offered before the thread starts, so they are all queued when it looks: the
batching is then certain, not a matter of timing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from andon.server.edge_registry import EdgeRegistry
from andon.server.ingest import SparkplugIngest
from andon.server.live_tags import LiveTagTable
from andon.sparkplug.actions import Publish
from andon.sparkplug.edge_node import EdgeNodeSession
from andon.sparkplug.host import HostAction, HostApplicationSession
from andon.sparkplug.model import DataType, Metric
from andon.storage.types import Sample
from andon.testing.host_link import BrokerlessHostLink

#: An hour ago: values must not be ahead of the server's clock to be shown live.
NOW = time.time_ns() // 1_000_000 - 3_600_000
BROKEN = "spBv1.0/G/DDATA/E/Broken"


class RecordingSink:
    def __init__(self) -> None:
        self.batches: list[list[Sample]] = []

    def submit(self, samples: Sequence[Sample], timeout: float | None = None) -> bool:
        self.batches.append(list(samples))
        return True


class FailingSession(HostApplicationSession):
    """A host session with a bug that shows on one topic."""

    def __init__(self, host_id: str, failing_topic: str) -> None:
        super().__init__(host_id)
        self.failing_topic = failing_topic

    def on_message(self, topic: str, payload: bytes, now_ms: int) -> list[HostAction]:
        if topic == self.failing_topic:
            raise RuntimeError("a bug")
        return super().on_message(topic, payload, now_ms)


class Rig:
    def __init__(
        self, session: HostApplicationSession | None = None, *, gather_s: float = 0.0
    ) -> None:
        self.edge = EdgeNodeSession("G", "E", bd_seq=None)
        self.edge.next_will(NOW)
        self.edge.on_connected(NOW)
        self.sink = RecordingSink()
        self.derived: list[list[Sample]] = []
        self.live = LiveTagTable()
        self.live_calls = 0
        self.live.add_listener(self._count_live)
        self.session = session or HostApplicationSession("host")
        self.session.connect(NOW)
        self.ingest = SparkplugIngest(
            self.live,
            EdgeRegistry(),
            self.sink,
            derive=lambda s: self.derived.append(list(s)),
            gather_s=gather_s,
        )
        self.ingest.attach([BrokerlessHostLink(self.session)])
        births = self.edge.births(
            [], {"D1": [Metric("Speed", 0.0, DataType.DOUBLE, timestamp=NOW)]}, NOW
        )
        for publish in births:  # born before the test's messages: not part of any batch
            self.session.on_message(publish.topic, publish.payload, NOW)

    def _count_live(self, changed: object) -> None:
        self.live_calls += 1

    def speed(self, index: int) -> Publish:
        ts = NOW + 1000 * (index + 1)
        return self.edge.data("D1", [Metric("Speed", float(index), timestamp=ts)], ts)

    def offer(self, publish: Publish) -> None:
        self.ingest.offer(publish.topic, publish.payload)

    def run_to_end(self) -> None:
        self.ingest.start()
        assert self.ingest.drain(10.0)
        self.ingest.stop()


def test_queued_messages_reach_history_mes_and_live_in_one_call_each_in_order() -> None:
    rig = Rig()
    for index in range(50):
        rig.offer(rig.speed(index))
    rig.run_to_end()
    assert len(rig.sink.batches) == 1
    assert [s.value for s in rig.sink.batches[0]] == [float(i) for i in range(50)]
    assert rig.derived == rig.sink.batches
    assert rig.live_calls == 1
    held = rig.live.get("G/E/D1/Speed")
    assert held is not None
    assert held.value == 49.0
    assert rig.ingest.stats.messages_total == 50
    assert rig.ingest.queue_depth == 0


def test_a_backlog_is_worked_off_in_batches_of_at_most_500_keeping_the_order() -> None:
    rig = Rig()
    for index in range(1_200):
        rig.offer(rig.speed(index))
    rig.run_to_end()
    assert [len(batch) for batch in rig.sink.batches] == [500, 500, 200]
    values = [s.value for batch in rig.sink.batches for s in batch]
    assert values == [float(i) for i in range(1_200)]


def test_a_death_within_a_batch_applies_after_the_values_received_before_it() -> None:
    rig = Rig()
    rig.offer(rig.speed(0))
    rig.offer(rig.edge.device_death("D1", NOW + 1500))
    rig.run_to_end()
    held = rig.live.get("G/E/D1/Speed")
    assert held is not None
    assert (held.value, held.quality, held.online) == (0.0, "STALE", False)
    assert [s.value for batch in rig.sink.batches for s in batch] == [0.0]


def test_a_message_that_fails_costs_only_itself_not_the_rest_of_its_batch() -> None:
    rig = Rig(FailingSession("host", BROKEN))
    first, second, third = rig.speed(0), rig.speed(1), rig.speed(2)
    rig.offer(first)
    rig.ingest.offer(BROKEN, second.payload)
    rig.offer(third)
    rig.run_to_end()
    assert [s.value for batch in rig.sink.batches for s in batch] == [0.0, 2.0]
    assert rig.ingest.stats.messages_total == 2
    assert rig.ingest.queue_depth == 0


def test_stop_handles_everything_queued_before_it() -> None:
    rig = Rig()
    for index in range(10):
        rig.offer(rig.speed(index))
    rig.ingest.start()
    rig.ingest.stop()  # queued behind the ten: they are handled first
    assert [s.value for batch in rig.sink.batches for s in batch] == [float(i) for i in range(10)]


def test_messages_arriving_while_a_short_batch_gathers_join_it() -> None:
    # However the thread and these offers interleave, all five are offered within the
    # gathering time of the first look that finds one.
    rig = Rig(gather_s=2.0)
    rig.offer(rig.speed(0))
    rig.ingest.start()
    for index in range(1, 5):
        rig.offer(rig.speed(index))
    assert rig.ingest.drain(10.0)
    rig.ingest.stop()
    assert [[s.value for s in batch] for batch in rig.sink.batches] == [[0.0, 1.0, 2.0, 3.0, 4.0]]


def test_a_full_batch_is_handled_without_gathering() -> None:
    rig = Rig(gather_s=3600.0)  # a gathering look would outlast the drain below
    for index in range(500):
        rig.offer(rig.speed(index))
    rig.ingest.start()
    assert rig.ingest.drain(10.0)
    rig.ingest.stop()
    assert [len(batch) for batch in rig.sink.batches] == [500]
