"""Modbus TCP source against pymodbus's own TCP server (SimDevice datastore) on a free port.

Source level: every register encoding decodes to the exact value, reads are grouped, writes
land in the server's registers (read back by an independent client) with type and range
checks. Full stack (Mosquitto, the real EdgeAgent and MesServer): values reach the historian,
and a unit id that does not answer gets a DDEATH while the other device keeps publishing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _modbus_rig import HOLDING, ModbusServer, device_config
from _sandf_rig import (
    NODE,
    WireObserver,
    edge_settings,
    server_settings,
    start_server,
    wait_for,
)
from pymodbus.client import ModbusTcpClient

from andon.edge.agent import EdgeAgent
from andon.edge.sources.base import TagChange
from andon.edge.sources.modbus import ModbusSource, plan_reads
from andon.settings import EdgeSettings
from andon.sparkplug.model import DataType
from andon.sparkplug.topic import MessageType
from andon.testing.brokers import MosquittoBroker
from andon.testing.ports import free_port
from andon.testing.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration


@pytest.fixture
def modbus_server() -> Iterator[ModbusServer]:
    server = ModbusServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _collect(source: ModbusSource, seen: dict[str, TagChange]) -> dict[str, TagChange]:
    for change in source.poll(0):
        seen[change.name] = change
    return seen


def test_every_encoding_decodes_exactly_and_writes_land(modbus_server: ModbusServer) -> None:
    config = device_config(modbus_server.port)
    # Holding 0..13 in one request, 40..41 in another (gap > max_gap), one per bit table.
    assert [(r.table, r.address, r.count) for r in plan_reads(config)] == [
        ("coil", 0, 4),
        ("discrete_input", 1, 1),
        ("holding", 0, 16),
        ("holding", 40, 2),
        ("input", 2, 1),
    ]
    source = ModbusSource([config])
    source.start()
    try:
        seen: dict[str, TagChange] = {}
        wait_for(
            lambda: len(_collect(source, seen)) == len(config.tags), lambda: f"read {sorted(seen)}"
        )
        assert source.device_online() == {"Press1": True}
        for tag, _, expected in HOLDING:
            assert seen[tag["name"]].value == expected, tag["name"]
        assert type(seen["I32"].value) is int
        assert type(seen["Temp"].value) is float
        assert (seen["Coil0"].value, seen["Coil3"].value, seen["In1"].value) == (True, False, True)
        assert seen["Ir2"].value == 9
        specs = {s.name: s for s in source.describe()["Press1"]}
        assert specs["Temp"].datatype is DataType.DOUBLE
        assert specs["U32LE"].datatype is DataType.UINT32

        # Writes: scaled value to raw register, range and type checks, read-only refused.
        assert source.write("Press1", "Temp", 30.0).accepted
        assert source.write("Press1", "Speed", 999).accepted
        assert source.write("Press1", "Coil0", False).accepted
        refused = {
            "Temp": source.write("Press1", "Temp", 151.0),
            "Speed": source.write("Press1", "Speed", 1001),
            "Speed-type": source.write("Press1", "Speed", "fast"),
            "I16": source.write("Press1", "I16", 1),
        }
        assert all(not r.accepted and r.reason for r in refused.values()), refused
        assert "read-only" in refused["I16"].reason
        check = ModbusTcpClient("127.0.0.1", port=modbus_server.port)
        assert check.connect()
        try:
            assert check.read_holding_registers(40, count=2, device_id=1).registers == [350, 999]
            assert check.read_coils(0, count=1, device_id=1).bits[0] is False
            assert check.read_holding_registers(40, count=1, device_id=2).registers == [250]
        finally:
            check.close()
        # The written values come back as changes (DDATA) straight away.
        after = {c.name: c.value for c in source.poll(0)}
        assert after == {"Temp": pytest.approx(30.0), "Speed": 999, "Coil0": False}
    finally:
        source.stop()


@pytest.fixture
def broker(tmp_path: Path, mosquitto_binary: str) -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker(data_dir=tmp_path / "broker", binary=mosquitto_binary)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.mark.mosquitto
def test_a_device_that_stops_answering_dies_alone(
    tmp_path: Path, modbus_server: ModbusServer, broker: MosquittoBroker
) -> None:
    """Press1 (unit 1) direct, Press2 (unit 2) behind a proxy that stops forwarding, Ghost
    (unit 9, no such unit) never answers: it is never born and blocks nobody."""
    observer = WireObserver(broker.port).start()
    server = start_server(server_settings(tmp_path, broker.port))
    proxy = TcpProxy("127.0.0.1", modbus_server.port).start()
    devices = [
        device_config(modbus_server.port, "Press1", 1),
        device_config(proxy.port, "Press2", 2),
        device_config(modbus_server.port, "Ghost", 9),
    ]
    base = edge_settings(tmp_path, broker.port).model_dump()
    settings = EdgeSettings.model_validate({**base, "modbus": [d.model_dump() for d in devices]})
    edge = EdgeAgent(settings)
    edge.start()
    check = ModbusTcpClient("127.0.0.1", port=modbus_server.port)
    assert check.connect()

    def births(since: int = 0) -> set[str | None]:
        return {m.device_id for m in observer.messages(NODE, [MessageType.DBIRTH], since)}

    try:
        wait_for(lambda: births() >= {"Press1", "Press2"}, lambda: f"births {births()}")
        # Values reach the historian exactly as decoded.
        tag = f"Plant1/{NODE}/Press1/F64"
        wait_for(lambda: server.historian.flush(5.0) and server.store.latest(tag), f"{tag} stored")
        latest = server.store.latest(tag)
        assert latest is not None
        assert latest.value == -2.25e10

        mark = observer.count()
        proxy.pause()
        death = observer.wait_message(MessageType.DDEATH, since=mark)
        assert death.device_id == "Press2"
        # Press1 keeps publishing while Press2 is dead.
        check.write_register(41, 77, device_id=1)
        wait_for(
            lambda: [
                v
                for m in observer.messages(NODE, [MessageType.DDATA], mark)
                if m.device_id == "Press1"
                for v in m.values
                if v.name == "Speed" and v.value == 77
            ],
            "Press1 stopped publishing when Press2 died",
        )
        mark = observer.count()
        proxy.resume()
        wait_for(lambda: "Press2" in births(mark), "Press2 never reborn")
        deaths = [m.device_id for m in observer.messages(NODE, [MessageType.DDEATH])]
        assert deaths == ["Press2"]
        assert "Ghost" not in births()
        assert edge.session.is_born
        assert not observer.messages(NODE, [MessageType.NDEATH])
    finally:
        check.close()
        edge.stop()
        proxy.stop()
        server.stop()
        observer.stop()
