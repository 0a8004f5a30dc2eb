"""Modbus TCP source against pymodbus's own TCP server (SimDevice datastore) on a free port.

Source level: every register encoding decodes to the exact value, reads are grouped, writes
land in the server's registers (read back by an independent client) with type and range
checks. Full stack (Mosquitto, the real EdgeAgent and MesServer): values reach the historian,
and a unit id that does not answer gets a DDEATH while the other device keeps publishing.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _sandf_rig import (
    NODE,
    WireObserver,
    edge_settings,
    server_settings,
    start_server,
    wait_for,
)
from pymodbus.client import ModbusTcpClient
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from andon.edge.agent import EdgeAgent
from andon.edge.sources.base import TagChange
from andon.edge.sources.config import ModbusDeviceConfig
from andon.edge.sources.modbus import ModbusSource, plan_reads
from andon.settings import EdgeSettings
from andon.sparkplug.model import DataType
from andon.sparkplug.topic import MessageType
from andon.testing.brokers import MosquittoBroker
from andon.testing.ports import free_port
from andon.testing.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration


def _regs(
    fmt: str, value: Any, *, word_little: bool = False, byte_little: bool = False
) -> list[int]:
    raw = struct.pack(">" + fmt, value)
    words = [raw[i : i + 2] for i in range(0, len(raw), 2)]
    if byte_little:
        words = [w[::-1] for w in words]
    if word_little:
        words.reverse()
    return [int.from_bytes(w, "big") for w in words]


#: (tag config, registers at its address, exact expected value)
HOLDING: list[tuple[dict[str, Any], list[int], object]] = [
    ({"name": "I16", "address": 0, "type": "int16"}, _regs("h", -1234), -1234),
    ({"name": "U16", "address": 1, "type": "uint16"}, [65535], 65535),
    ({"name": "I32", "address": 2, "type": "int32"}, _regs("i", -70000), -70000),
    (
        {"name": "U32LE", "address": 4, "type": "uint32", "word_order": "little"},
        _regs("I", 4_000_000_000, word_little=True),
        4_000_000_000,
    ),
    ({"name": "F32", "address": 6, "type": "float32"}, _regs("f", 1.5), 1.5),
    (
        {
            "name": "F64",
            "address": 8,
            "type": "float64",
            "word_order": "little",
            "byte_order": "little",
        },
        _regs("d", -2.25e10, word_little=True, byte_little=True),
        -2.25e10,
    ),
    (
        {"name": "Name", "address": 12, "type": "string", "length": 4},
        [int.from_bytes(b, "big") for b in (b"AB", b"C1", b"\x00\x00", b"\x00\x00")],
        "ABC1",
    ),
    (
        {
            "name": "Temp",
            "address": 40,
            "type": "int16",
            "scale": 0.1,
            "offset": -5.0,
            "writable": True,
            "min": -50,
            "max": 150,
        },
        _regs("h", 250),
        250 * 0.1 - 5.0,
    ),
    ({"name": "Speed", "address": 41, "type": "uint16", "writable": True, "max": 1000}, [10], 10),
]


class ModbusServer:
    """pymodbus's TCP server on its own event loop thread; unit ids 1 and 2."""

    def __init__(self, port: int) -> None:
        self.port = port
        holding = [0] * 64
        for tag, registers, _ in HOLDING:
            holding[tag["address"] : tag["address"] + len(registers)] = registers

        def device(unit: int) -> SimDevice:
            return SimDevice(
                unit,
                simdata=(
                    [SimData(0, count=16, values=[True, False] * 8, datatype=SimType.BITS)],
                    [SimData(0, count=16, values=[False, True] * 8, datatype=SimType.BITS)],
                    [SimData(0, values=holding, datatype=SimType.REGISTERS)],
                    [SimData(0, values=[7, 8, 9, 10], datatype=SimType.REGISTERS)],
                ),
            )

        self.devices = [device(1), device(2)]
        self.server: ModbusTcpServer | None = None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _serve(self) -> None:
        # The server binds to the running loop when created: create it on the server's loop.
        self.server = ModbusTcpServer(self.devices, address=("127.0.0.1", self.port))
        await self.server.serve_forever(background=True)

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result(10)

    def stop(self) -> None:
        assert self.server is not None
        asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def modbus_server() -> Iterator[ModbusServer]:
    server = ModbusServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def device_config(port: int, device: str = "Press1", unit_id: int = 1) -> ModbusDeviceConfig:
    tags: list[dict[str, Any]] = [{**tag, "table": "holding"} for tag, _, _ in HOLDING]
    tags += [
        {"name": "Coil0", "table": "coil", "address": 0, "type": "bool", "writable": True},
        {"name": "Coil3", "table": "coil", "address": 3, "type": "bool"},
        {"name": "In1", "table": "discrete_input", "address": 1, "type": "bool"},
        {"name": "Ir2", "table": "input", "address": 2, "type": "uint16"},
    ]
    return ModbusDeviceConfig.model_validate(
        {
            "device": device,
            "host": "127.0.0.1",
            "port": port,
            "unit_id": unit_id,
            "poll_interval_s": 0.1,
            "timeout_s": 0.5,
            "backoff_initial_s": 0.1,
            "backoff_max_s": 0.5,
            "tags": tags,
        }
    )


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
