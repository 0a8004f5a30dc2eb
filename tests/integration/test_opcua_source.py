"""OPC UA source against asyncua's own server on a free port, through the whole stack.

Mosquitto, the real EdgeAgent (OPC UA device configured in its settings) and the real
MesServer (SQLite). Proves: values of each type arrive in the historian with the server's
source timestamps and quality; a DCMD writes the server's variable and the new value comes
back; a refused write reaches the host as Andon/Command/LastError; stopping the server gives a
DDEATH (the edge keeps running), starting it again a DBIRTH with current values.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from _opcua_rig import DEVICE, SOURCE_TS, VARIABLES, OpcUaServer, opcua_device
from _sandf_rig import NODE, WireObserver, edge_settings, server_settings, start_server, wait_for
from asyncua import ua

from andon.edge.agent import EdgeAgent
from andon.edge.sources.opcua import OpcUaSource
from andon.server.mes_server import MesServer
from andon.settings import EdgeSettings
from andon.sparkplug.codec import encode_payload
from andon.sparkplug.model import DataType, Metric, Payload
from andon.sparkplug.topic import MessageType
from andon.testing.brokers import MosquittoBroker
from andon.testing.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.mosquitto]


@pytest.fixture
def opcua_server() -> Iterator[OpcUaServer]:
    server = OpcUaServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def broker(tmp_path: Path, mosquitto_binary: str) -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker(data_dir=tmp_path / "broker", binary=mosquitto_binary)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _dcmd(observer: WireObserver, **values: tuple[DataType, Any]) -> None:
    metrics = tuple(Metric(name, value, datatype) for name, (datatype, value) in values.items())
    payload = Payload(timestamp=time.time_ns() // 1_000_000, metrics=metrics)
    observer.publish(f"spBv1.0/Plant1/DCMD/{NODE}/{DEVICE}", encode_payload(payload))


@dataclass
class Stack:
    observer: WireObserver
    server: MesServer
    edge: EdgeAgent

    def stored(self, tag: str) -> list[Any]:
        self.server.ingest.drain(1.0)
        self.server.historian.flush(5.0)
        return self.server.store.history(f"Plant1/{NODE}/{DEVICE}/{tag}", 0, 2**62)

    def published(self, kind: MessageType, name: str, since: int) -> list[Any]:
        return [
            v.value
            for m in self.observer.messages(NODE, [kind], since)
            for v in m.values
            if v.name == name
        ]


@pytest.fixture
def stack(tmp_path: Path, opcua_server: OpcUaServer, broker: MosquittoBroker) -> Iterator[Stack]:
    observer = WireObserver(broker.port).start()
    server = start_server(server_settings(tmp_path, broker.port))
    base = edge_settings(tmp_path, broker.port).model_dump()
    settings = EdgeSettings.model_validate({**base, "opcua": [opcua_device(opcua_server.port)]})
    edge = EdgeAgent(settings)
    assert [type(s) for s in edge.sources] == [OpcUaSource]  # no simulator beside equipment
    edge.start()
    try:
        yield Stack(observer, server, edge)
    finally:
        edge.stop()
        server.stop()
        observer.stop()


def test_values_source_timestamps_and_quality_reach_the_historian(
    stack: Stack, opcua_server: OpcUaServer
) -> None:
    birth = stack.observer.wait_message(MessageType.DBIRTH)
    born = {v.name: v for v in birth.values}
    assert {n: born[n].value for n in VARIABLES} == pytest.approx(
        {n: v for n, (_, v, _) in VARIABLES.items()}
    )
    assert born["Temp"].ts_ms == int(SOURCE_TS.timestamp() * 1000)  # source time kept

    # A change with its own source timestamp, and a Bad status, reach the historian.
    stamp = datetime.now(UTC).replace(microsecond=456000)
    opcua_server.write("Count", 7, SourceTimestamp=stamp)
    opcua_server.write("State", 2, StatusCode=ua.StatusCode(ua.StatusCodes.BadSensorFailure))
    stamp_ms = int(stamp.timestamp() * 1000)
    wait_for(
        lambda: any(s.ts_ms == stamp_ms and s.value == 7 for s in stack.stored("Count")),
        "Count with its source timestamp",
    )
    bad = wait_for(lambda: [s for s in stack.stored("State") if s.quality != 192], "bad State")
    assert bad[-1].quality == 0  # Bad status: BAD quality
    assert bad[-1].value is None  # and no value
    for name in VARIABLES:
        assert stack.stored(name), f"{name} never reached the historian"


def test_dcmd_writes_the_variable_and_refusals_are_reported(
    stack: Stack, opcua_server: OpcUaServer
) -> None:
    stack.observer.wait_message(MessageType.DBIRTH)
    mark = stack.observer.count()
    _dcmd(stack.observer, Setpoint=(DataType.DOUBLE, 99.5))
    wait_for(lambda: opcua_server.read("Setpoint") == 99.5, "Setpoint not written")
    wait_for(
        lambda: 99.5 in stack.published(MessageType.DDATA, "Setpoint", mark),
        "no DDATA of the written Setpoint",
    )
    # Out of range and read-only: refused, the host is told why, the server untouched.
    mark = stack.observer.count()
    _dcmd(stack.observer, Setpoint=(DataType.DOUBLE, 500.0))
    _dcmd(stack.observer, Order=(DataType.STRING, "PO-2"))
    errors = wait_for(
        lambda: stack.published(MessageType.NDATA, "Andon/Command/LastError", mark)[1:],
        "no Andon/Command/LastError for the refused writes",
    )
    assert "read-only" in str(errors[-1])
    assert opcua_server.read("Setpoint") == 99.5
    assert opcua_server.read("Order") == "PO-1"


def test_server_stopped_gives_ddeath_and_back_dbirth(
    stack: Stack, opcua_server: OpcUaServer
) -> None:
    observer = stack.observer
    observer.wait_message(MessageType.DBIRTH)
    mark = observer.count()
    opcua_server.stop()
    observer.wait_message(MessageType.DDEATH, since=mark)
    assert not observer.messages(NODE, [MessageType.NDEATH], mark)  # the edge node lives on
    mark = observer.count()
    opcua_server.start()
    reborn = observer.wait_message(MessageType.DBIRTH, since=mark)
    assert {v.name: v.value for v in reborn.values}["Order"] == "PO-1"  # current values
    opcua_server.write("Count", 8)
    wait_for(lambda: any(s.value == 8 for s in stack.stored("Count")), "no data after DBIRTH")
    assert stack.edge.publisher.stats.device_deaths_total == 1
