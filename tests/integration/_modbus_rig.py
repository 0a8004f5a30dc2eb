"""pymodbus's own Modbus TCP server (SimDevice datastore) on a free port, for the Modbus tests.

Unit ids 1 and 2 hold the same registers: ``HOLDING`` lists, per tag configuration, the raw
registers at its address and the exact value the source must decode from them.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from typing import Any

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from andon.edge.sources.config import ModbusDeviceConfig

__all__ = ["HOLDING", "ModbusServer", "device_config"]


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
