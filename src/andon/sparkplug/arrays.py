"""Sparkplug 3.0 array datatypes (22-34), packed into ``Metric.bytes_value``.

Layout per the Sparkplug 3.0 specification (§6.4.17): numeric arrays are the elements packed
little-endian back to back; BooleanArray is a 4-byte little-endian element count followed by the
bits packed most-significant-bit first, padded to a whole byte; StringArray is NUL-terminated
UTF-8 strings back to back; DateTimeArray is little-endian uint64 milliseconds.
"""

from __future__ import annotations

import struct

from andon.sparkplug.errors import PayloadError
from andon.sparkplug.model import INTEGER_RANGES, DataType

__all__ = ["decode_array", "encode_array"]

# struct format character per element for the fixed-width arrays, and the scalar type whose
# range bounds each element.
_FIXED_WIDTH: dict[DataType, tuple[str, DataType | None]] = {
    DataType.INT8_ARRAY: ("b", DataType.INT8),
    DataType.INT16_ARRAY: ("h", DataType.INT16),
    DataType.INT32_ARRAY: ("i", DataType.INT32),
    DataType.INT64_ARRAY: ("q", DataType.INT64),
    DataType.UINT8_ARRAY: ("B", DataType.UINT8),
    DataType.UINT16_ARRAY: ("H", DataType.UINT16),
    DataType.UINT32_ARRAY: ("I", DataType.UINT32),
    DataType.UINT64_ARRAY: ("Q", DataType.UINT64),
    DataType.FLOAT_ARRAY: ("f", None),
    DataType.DOUBLE_ARRAY: ("d", None),
    DataType.DATETIME_ARRAY: ("Q", DataType.DATETIME),
}


def encode_array(datatype: DataType, values: tuple[bool | int | float | str, ...]) -> bytes:
    """Pack ``values`` for ``datatype``; raises PayloadError on a wrong element type or range."""
    if not isinstance(values, tuple):
        raise PayloadError(f"{datatype.name} value must be a tuple, got {type(values).__name__}")
    if datatype is DataType.BOOLEAN_ARRAY:
        if any(type(v) is not bool for v in values):
            raise PayloadError("BOOLEAN_ARRAY elements must be bool")
        packed = bytearray((len(values) + 7) // 8)
        for index, bit in enumerate(values):
            if bit:
                packed[index >> 3] |= 0x80 >> (index & 7)
        return struct.pack("<I", len(values)) + bytes(packed)
    if datatype is DataType.STRING_ARRAY:
        if any(type(v) is not str or "\x00" in v for v in values):
            raise PayloadError("STRING_ARRAY elements must be str without NUL characters")
        return b"".join(v.encode() + b"\x00" for v in values)  # type: ignore[union-attr]
    spec = _FIXED_WIDTH.get(datatype)
    if spec is None:
        raise PayloadError(f"not an array datatype: {datatype!r}")
    fmt, scalar = spec
    if scalar is None:
        if any(type(v) not in (int, float) for v in values):
            raise PayloadError(f"{datatype.name} elements must be float")
    else:
        low, high = INTEGER_RANGES[scalar]
        for v in values:
            if type(v) is not int or not low <= v <= high:
                raise PayloadError(f"{datatype.name} element {v!r} outside {low}..{high}")
    try:
        return struct.pack(f"<{len(values)}{fmt}", *values)
    except (struct.error, OverflowError) as exc:
        raise PayloadError(f"{datatype.name}: {exc}") from exc


def decode_array(datatype: DataType, raw: bytes) -> tuple[bool | int | float | str, ...]:
    """Unpack ``raw`` (a ``bytes_value``) for ``datatype``; raises PayloadError when malformed."""
    if datatype is DataType.BOOLEAN_ARRAY:
        if len(raw) < 4:
            raise PayloadError("BOOLEAN_ARRAY shorter than its 4-byte count")
        (count,) = struct.unpack_from("<I", raw)
        if len(raw) - 4 != (count + 7) // 8:
            raise PayloadError(f"BOOLEAN_ARRAY of {count} needs {(count + 7) // 8} bytes")
        bits = raw[4:]
        return tuple(bool(bits[i >> 3] & (0x80 >> (i & 7))) for i in range(count))
    if datatype is DataType.STRING_ARRAY:
        if not raw:
            return ()
        if raw[-1] != 0:
            raise PayloadError("STRING_ARRAY must end with a NUL terminator")
        try:
            return tuple(raw[:-1].decode().split("\x00"))
        except UnicodeDecodeError as exc:
            raise PayloadError(f"STRING_ARRAY is not UTF-8: {exc}") from exc
    spec = _FIXED_WIDTH.get(datatype)
    if spec is None:
        raise PayloadError(f"not an array datatype: {datatype!r}")
    fmt = spec[0]
    size = struct.calcsize(fmt)
    if len(raw) % size:
        raise PayloadError(f"{datatype.name} length {len(raw)} is not a multiple of {size}")
    return struct.unpack(f"<{len(raw) // size}{fmt}", raw)
