"""Modbus TCP source (pymodbus): coils, discrete inputs, holding and input registers.

Each device (one unit id of one server) has its own thread and connection, so a device that
stops answering delays nobody else: its thread marks it lost (DDEATH), reconnects with a
doubling backoff, and on the first full read marks it answering again (DBIRTH). Tags are read
in as few requests as the device allows (``max_registers_per_read``, joining neighbours across
up to ``max_gap`` unused registers). Modbus carries no timestamps: a value is stamped when its
read returned, strictly increasing per device so no two values of a tag share a millisecond.
"""

from __future__ import annotations

import logging
import math
import struct
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException

from andon.edge.sources.base import ChangeBuffer, TagChange, TagSpec, WriteResult
from andon.edge.sources.config import ModbusDeviceConfig, ModbusTagConfig
from andon.sparkplug.model import DataType, MetricValue
from andon.testing.clock import Clock, SystemClock

__all__ = ["ModbusSource", "decode_tag", "encode_tag", "plan_reads"]

log = logging.getLogger(__name__)

_STRUCT = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f", "float64": "d"}


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One Modbus read: ``count`` registers (or bits) of ``table`` from ``address``."""

    table: str
    address: int
    count: int
    tags: tuple[ModbusTagConfig, ...]


def plan_reads(device: ModbusDeviceConfig) -> list[ReadRequest]:
    """The fewest reads covering every tag within the device's request limits."""
    requests: list[ReadRequest] = []
    for table in ("coil", "discrete_input", "holding", "input"):
        tags = sorted((t for t in device.tags if t.table == table), key=lambda t: t.address)
        bits = table in ("coil", "discrete_input")
        limit = device.max_bits_per_read if bits else device.max_registers_per_read
        group: list[ModbusTagConfig] = []
        for tag in tags:
            if group:
                start = group[0].address
                end = max(t.address + t.size for t in group)
                fits = tag.address + tag.size - start <= limit
                if fits and tag.address - end <= device.max_gap:
                    group.append(tag)
                    continue
                requests.append(ReadRequest(table, start, end - start, tuple(group)))
            group = [tag]
        if group:
            start = group[0].address
            end = max(t.address + t.size for t in group)
            requests.append(ReadRequest(table, start, end - start, tuple(group)))
    return requests


def _to_bytes(tag: ModbusTagConfig, registers: Sequence[int]) -> bytes:
    words = list(registers)
    if tag.word_order == "little":
        words.reverse()
    raw = b"".join(w.to_bytes(2, "big") for w in words)
    if tag.byte_order == "little":
        raw = b"".join(raw[i + 1 : i + 2] + raw[i : i + 1] for i in range(0, len(raw), 2))
    return raw


def _to_registers(tag: ModbusTagConfig, raw: bytes) -> list[int]:
    if tag.byte_order == "little":
        raw = b"".join(raw[i + 1 : i + 2] + raw[i : i + 1] for i in range(0, len(raw), 2))
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    if tag.word_order == "little":
        words.reverse()
    return words


def decode_tag(tag: ModbusTagConfig, registers: Sequence[int]) -> MetricValue:
    """The published value of ``tag`` from its registers (byte/word order, scale, offset)."""
    raw = _to_bytes(tag, registers)
    if tag.type == "string":
        return raw.split(b"\x00", 1)[0].decode("latin-1")
    (value,) = struct.unpack(">" + _STRUCT[tag.type], raw)
    if tag.scaled:
        return float(value) * tag.scale + tag.offset
    return value  # type: ignore[no-any-return]  # int or float from struct


def encode_tag(tag: ModbusTagConfig, value: MetricValue) -> list[int]:
    """Registers that make ``tag`` read ``value``; ValueError when it cannot hold it."""
    if tag.type == "string":
        if not isinstance(value, str):
            raise ValueError(f"{tag.name} is a string; got {value!r}")
        data = value.encode("latin-1", errors="strict")
        if len(data) > 2 * tag.size:
            raise ValueError(f"{tag.name} holds {2 * tag.size} characters; got {len(data)}")
        return _to_registers(tag, data.ljust(2 * tag.size, b"\x00"))
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{tag.name} is a number; got {value!r}")
    number = float(value)
    if not math.isfinite(number) and tag.type not in ("float32", "float64"):
        raise ValueError(f"{tag.name}: {value!r} is not a finite number")
    if (tag.min is not None and number < tag.min) or (tag.max is not None and number > tag.max):
        raise ValueError(f"{tag.name} accepts {tag.min}..{tag.max}; got {value!r}")
    raw: float | int = (number - tag.offset) / tag.scale if tag.scaled else value
    code = _STRUCT[tag.type]
    if code in "hHiI":
        if isinstance(raw, float):
            if not raw.is_integer() and not tag.scaled:
                raise ValueError(f"{tag.name} is an integer; got {value!r}")
            raw = round(raw)
        bits = struct.calcsize(code) * 8
        low, high = (
            (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if code.islower() else (0, 2**bits - 1)
        )
        if not low <= raw <= high:
            raise ValueError(f"{tag.name} ({tag.type}) cannot hold {value!r}")
    try:
        return _to_registers(tag, struct.pack(">" + code, raw))
    except (struct.error, OverflowError) as exc:
        raise ValueError(f"{tag.name} ({tag.type}) cannot hold {value!r}: {exc}") from exc


def _initial(datatype: DataType) -> MetricValue:
    if datatype is DataType.BOOLEAN:
        return False
    if datatype is DataType.STRING:
        return ""
    return 0.0 if datatype in (DataType.FLOAT, DataType.DOUBLE) else 0


class _DeviceLink:
    """One device's connection, read plan and last values; its thread polls it."""

    def __init__(
        self,
        config: ModbusDeviceConfig,
        buffer: ChangeBuffer,
        clock: Clock,
        client_factory: Callable[..., Any],
    ) -> None:
        self.config = config
        self.tags = {tag.name: tag for tag in config.tags}
        self.plan = plan_reads(config)
        self._buffer = buffer
        self._clock = clock
        self._client = client_factory(
            config.host, port=config.port, timeout=config.timeout_s, retries=0
        )
        self._lock = threading.Lock()  # the client is not thread-safe: poll thread vs. writes
        self._last: dict[str, MetricValue] = {}
        self._last_ts = 0
        self._reported_lost = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"andon-modbus-{config.device}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self._client.close()

    def _run(self) -> None:
        backoff = self.config.backoff_initial_s
        while not self._stop.is_set():
            try:
                with self._lock:
                    self._read_all()
                backoff = self.config.backoff_initial_s
                wait = self.config.poll_interval_s
            except (ModbusException, OSError, ValueError) as exc:
                if not self._reported_lost:  # once per outage, not once per retry
                    log.warning("modbus device %s not answering: %s", self.config.device, exc)
                    self._reported_lost = True
                self._buffer.lost(self.config.device)
                self._last.clear()  # the next answer is a full read: its DBIRTH is current
                self._client.close()
                wait, backoff = backoff, min(backoff * 2, self.config.backoff_max_s)
            self._wake.wait(wait)
            self._wake.clear()

    def _read(self, request: ReadRequest) -> list[int] | list[bool]:
        if not self._client.connected and not self._client.connect():
            raise ConnectionError(f"cannot connect to {self.config.host}:{self.config.port}")
        read = {
            "coil": self._client.read_coils,
            "discrete_input": self._client.read_discrete_inputs,
            "holding": self._client.read_holding_registers,
            "input": self._client.read_input_registers,
        }[request.table]
        result = read(request.address, count=request.count, device_id=self.config.unit_id)
        if result.isError():
            raise ModbusException(f"{request.table} {request.address}+{request.count}: {result}")
        if request.table in ("coil", "discrete_input"):
            return list(result.bits[: request.count])
        return list(result.registers)

    def _read_all(self, only: Sequence[ReadRequest] | None = None) -> None:
        values: dict[str, MetricValue] = {}
        for request in only or self.plan:
            data = self._read(request)
            for tag in request.tags:
                at = tag.address - request.address
                if tag.type == "bool":
                    values[tag.name] = bool(data[at])
                else:
                    values[tag.name] = decode_tag(tag, [int(v) for v in data[at : at + tag.size]])
        now = max(self._clock.now_ms(), self._last_ts + 1)
        changes = [
            TagChange(self.config.device, name, value, now)
            for name, value in values.items()
            if name not in self._last or self._last[name] != value
        ]
        if changes:
            self._last_ts = now
        self._last.update(values)
        coming_back = only is None and not self._buffer.is_online(self.config.device)
        if coming_back:
            log.info("modbus device %s answers", self.config.device)
            self._reported_lost = False
        self._buffer.push(changes, online=self.config.device if coming_back else None)

    def write(self, tag: ModbusTagConfig, value: MetricValue) -> WriteResult:
        if not self._buffer.is_online(self.config.device):
            return WriteResult.rejected(f"device {self.config.device} is not answering")
        try:
            with self._lock:
                if tag.type == "bool":
                    if not isinstance(value, bool):
                        return WriteResult.rejected(f"{tag.name} is a bit; got {value!r}")
                    result = self._client.write_coil(
                        tag.address, value, device_id=self.config.unit_id
                    )
                else:
                    registers = encode_tag(tag, value)
                    result = self._client.write_registers(
                        tag.address, registers, device_id=self.config.unit_id
                    )
                if result.isError():
                    return WriteResult.rejected(f"device refused the write: {result}")
                # Read it back: the new value goes out as DDATA now, not a poll later.
                self._read_all([r for r in self.plan if tag in r.tags])
        except ValueError as exc:
            return WriteResult.rejected(str(exc))
        except (ModbusException, OSError) as exc:
            self._wake.set()  # let the poll thread find out whether the device is gone
            return WriteResult.rejected(f"write failed: {exc}")
        return WriteResult.ok()


class ModbusSource:
    """Every configured Modbus TCP device; ``start`` before the first poll."""

    def __init__(
        self,
        devices: Sequence[ModbusDeviceConfig],
        *,
        clock: Clock | None = None,
        client_factory: Callable[..., Any] = ModbusTcpClient,
        max_buffered: int = 100_000,
    ) -> None:
        self._buffer = ChangeBuffer((d.device for d in devices), max_buffered)
        clock = clock or SystemClock()
        self._links = {
            d.device: _DeviceLink(d, self._buffer, clock, client_factory) for d in devices
        }

    def describe(self) -> Mapping[str, Sequence[TagSpec]]:
        return {
            device: [
                TagSpec(
                    t.name,
                    t.datatype,
                    _initial(t.datatype),
                    unit=t.unit,
                    writable=t.writable,
                    description=t.description,
                )
                for t in link.config.tags
            ]
            for device, link in self._links.items()
        }

    def start(self) -> None:
        for link in self._links.values():
            link.start()

    def stop(self, timeout: float = 5.0) -> None:
        for link in self._links.values():
            link.stop(timeout)

    def poll(self, now_ms: int) -> list[TagChange]:
        del now_ms  # values are stamped when read
        return self._buffer.drain()

    def device_online(self) -> Mapping[str, bool]:
        return self._buffer.online()

    def write(self, device_id: str, name: str, value: MetricValue) -> WriteResult:
        link = self._links.get(device_id)
        if link is None:
            return WriteResult.rejected(f"unknown device {device_id!r}")
        tag = link.tags.get(name)
        if tag is None:
            return WriteResult.rejected(f"device {device_id!r} has no tag {name!r}")
        if not tag.writable:
            return WriteResult.rejected(f"{device_id}/{name} is read-only")
        return link.write(tag, value)
