"""The server's writes to equipment, beyond the contract suite: value checks, the births' say
on writability (any Sparkplug edge, not only Andon's), and the answers an Andon edge cannot be
made to give on cue (no answer at all, a device lost while the write waits).

A ``MesServer`` on the in-memory broker; the edge is a bare ``EdgeNodeSession`` whose messages
the test publishes itself, so it answers a command only as the test decides.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from andon.mqtt.interface import MqttEndpoint
from andon.server.mes_server import MesServer
from andon.server.tag_writes import TagNotWritableError, TagValueError, coerce_write_value, echoes
from andon.settings import ServerSettings
from andon.sparkplug.codec import decode_payload
from andon.sparkplug.edge_node import FENCE_EPOCH_METRIC, READ_ONLY_PROPERTY, EdgeNodeSession
from andon.sparkplug.model import DataType, Metric
from andon.testing.memory_broker import InMemoryBroker, InMemoryBrokerClient
from andon.testing.processes import wait_until

SPEED = "Plant/Edge1/Press1/Speed"


@pytest.mark.parametrize(
    ("datatype", "value", "expected"),
    [
        (DataType.BOOLEAN, True, True),
        (DataType.INT8, -128, -128),
        (DataType.UINT16, 65535, 65535),
        (DataType.INT32, 7.0, 7),  # an integral number is an integer
        (DataType.UINT64, 2**64 - 1, 2**64 - 1),
        (DataType.FLOAT, 1.5, 1.5),
        (DataType.DOUBLE, 3, 3.0),
        (DataType.STRING, "PO-1", "PO-1"),
        (DataType.TEXT, "", ""),
    ],
)
def test_values_that_fit_are_converted_to_the_datatype(
    datatype: DataType, value: object, expected: object
) -> None:
    converted = coerce_write_value(datatype, value)
    assert converted == expected
    assert type(converted) is type(expected)


@pytest.mark.parametrize(
    ("datatype", "value", "error"),
    [
        (DataType.BOOLEAN, 1, "BOOLEAN needs true or false"),
        (DataType.INT8, 128, "INT8 holds -128..127, got 128"),
        (DataType.UINT32, -1, "UINT32 holds 0..4294967295"),
        (DataType.INT32, 1.5, "INT32 needs an integer"),
        (DataType.INT32, True, "INT32 needs an integer"),
        (DataType.INT16, "7", "INT16 needs an integer"),
        (DataType.FLOAT, 1e39, "does not fit a 32-bit Float"),
        (DataType.DOUBLE, math.inf, "needs a finite number"),
        (DataType.DOUBLE, False, "DOUBLE needs a number"),
        (DataType.STRING, 5, "STRING needs a string"),
        (DataType.STRING, None, "null cannot be written"),
        (DataType.BYTES, "AA==", "tags of datatype BYTES cannot be written"),
        (DataType.INT32_ARRAY, [1], "tags of datatype INT32_ARRAY cannot be written"),
    ],
)
def test_values_that_do_not_fit_are_refused(datatype: DataType, value: object, error: str) -> None:
    with pytest.raises(TagValueError, match=error):
        coerce_write_value(datatype, value)


def test_an_echo_of_a_float_matches_to_six_digits() -> None:
    as_float32 = 0.10000000149011612  # 0.1 through a 32-bit Float
    assert echoes(DataType.FLOAT, 0.1, as_float32)
    assert echoes(DataType.DOUBLE, 30.0, 35.00000000000001 - 5.0)  # a scaled register
    assert not echoes(DataType.DOUBLE, 30.0, 30.1)
    assert not echoes(DataType.DOUBLE, 1.0, True)
    assert echoes(DataType.INT32, 5, 5)
    assert not echoes(DataType.BOOLEAN, True, 1)


class BareEdge:
    """An edge node whose messages the test publishes; it records the commands it gets."""

    def __init__(self, broker: InMemoryBroker, metrics: list[Metric]) -> None:
        self.session = EdgeNodeSession("Plant", "Edge1", bd_seq=None)
        self.commands: list[dict[str, Any]] = []
        self.on_command: Callable[[], None] = lambda: None
        self.client = broker.client("bare-edge", on_message=self._on_message, listener=self)
        now = time.time_ns() // 1_000_000
        self.session.next_will(now)
        self.client.start()
        self.session.on_connected(now)
        self.client.subscribe([("spBv1.0/Plant/DCMD/Edge1/#", 1)])
        for publish in self.session.births([], {"Press1": metrics}, now):
            self.client.publish(publish.topic, publish.payload, qos=1)

    def _on_message(self, topic: str, payload: bytes) -> None:
        decoded = decode_payload(payload)
        self.commands.append({m.name: m.value for m in decoded.metrics})
        self.on_command()

    def publish_death(self) -> None:
        death = self.session.device_death("Press1", time.time_ns() // 1_000_000)
        self.client.publish(death.topic, death.payload, qos=1)

    def on_connected(self) -> None:
        pass

    def on_disconnected(self, reason: str) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[MesServer, InMemoryBroker]]:
    broker = InMemoryBroker()

    def factory(endpoint: MqttEndpoint, **kwargs: Any) -> InMemoryBrokerClient:
        return broker.client(endpoint.client_id, **kwargs)

    settings = ServerSettings(
        host_id="writes",
        database_url=f"sqlite:///{tmp_path / 'andon.db'}",
        historian_spool_path=tmp_path / "spool.db",
        tag_write_timeout_s=0.3,  # the silent edge makes every write wait this long
    )
    mes = MesServer(settings, client_factory=factory, serve_http=False)
    mes.start()
    try:
        assert mes.host.wait_online(5.0)
        yield mes, broker
    finally:
        mes.stop()


def _born(mes: MesServer, broker: InMemoryBroker, metrics: list[Metric]) -> BareEdge:
    edge = BareEdge(broker, metrics)
    wait_until(lambda: mes.live_tags.get(SPEED), 5.0, "the bare edge's birth was not ingested")
    return edge


def test_a_silent_edge_gives_a_timeout_with_the_current_value(
    server: tuple[MesServer, InMemoryBroker],
) -> None:
    mes, broker = server
    edge = _born(mes, broker, [Metric("Speed", 10.0, DataType.DOUBLE)])
    outcome = mes.write_tag(SPEED, 20.0, epoch_provider=lambda: 4)
    assert (outcome.result, outcome.value, outcome.previous) == ("timeout", 10.0, 10.0)
    assert outcome.error == "no answer from the edge within 0.3 s (the tag reads 10.0)"
    # The command went out: the value as the birth's datatype, and the fence epoch.
    assert edge.commands == [{"Speed": 20.0, FENCE_EPOCH_METRIC: 4}]


def test_writing_the_value_the_tag_holds_is_written_when_no_error_comes(
    server: tuple[MesServer, InMemoryBroker],
) -> None:
    mes, broker = server
    edge = _born(mes, broker, [Metric("Speed", 10.0, DataType.DOUBLE)])
    outcome = mes.write_tag(SPEED, 10)  # no change to report: only the absence of an error
    assert (outcome.result, outcome.value, outcome.error) == ("written", 10.0, None)
    assert edge.commands == [{"Speed": 10.0}]


def test_a_device_lost_while_the_write_waits_ends_the_wait(
    server: tuple[MesServer, InMemoryBroker],
) -> None:
    mes, broker = server
    mes.tag_writer.timeout_s = 30.0  # the death must end the wait, not the timeout
    edge = _born(mes, broker, [Metric("Speed", 10.0, DataType.DOUBLE)])
    edge.on_command = edge.publish_death
    started = time.monotonic()
    outcome = mes.write_tag(SPEED, 20.0)
    assert time.monotonic() - started < 10.0
    assert outcome.result == "timeout"
    assert outcome.error == "the device went offline before answering"


def test_the_birth_decides_what_is_read_only_for_any_edge(
    server: tuple[MesServer, InMemoryBroker],
) -> None:
    mes, broker = server
    edge = _born(
        mes,
        broker,
        [
            Metric("Speed", 10.0, DataType.DOUBLE),  # no property: the edge decides
            Metric("Count", 5, DataType.UINT32, properties={READ_ONLY_PROPERTY: True}),
        ],
    )
    with pytest.raises(TagNotWritableError, match="Plant/Edge1/Press1/Count is read-only"):
        mes.write_tag("Plant/Edge1/Press1/Count", 6)
    assert edge.commands == []
    assert mes.write_tag(SPEED, 11.0).result == "timeout"  # sent: the bare edge never answers
    assert edge.commands == [{"Speed": 11.0}]
