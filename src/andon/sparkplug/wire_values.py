"""Writing a typed value into the protobuf field its datatype uses (the codec's encode side).

One setter per datatype, looked up once per value: the store-and-forward flush encodes
hundreds of thousands of values per second (``codec.encode_data_columns``), and a chain of
datatype tests per value cost about as much as the protobuf field write itself. Each setter
raises ``PayloadError`` when the value does not fit its datatype.

Integer encoding (see the ``codec`` docstring): Int8/16/32 and UInt8/16/32 go into ``int_value``
as 32-bit two's complement, the 64-bit integers and DateTime into ``long_value``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf.message import DecodeError

from andon.sparkplug.arrays import encode_array
from andon.sparkplug.errors import PayloadError
from andon.sparkplug.model import ARRAY_TYPES, INTEGER_RANGES, DataType, MetricValue

__all__ = ["VALUE_SETTERS", "ValueSetter", "set_value"]

#: Writes a value into a protobuf ``Payload.Metric`` (its value oneof).
ValueSetter = Callable[[Any, MetricValue], None]

_U32 = 0xFFFF_FFFF
_U64 = 0xFFFF_FFFF_FFFF_FFFF
_FLOAT32_MAX = 3.4028234663852886e38
_INT_FIELD_TYPES = frozenset(
    {
        DataType.INT8,
        DataType.INT16,
        DataType.INT32,
        DataType.UINT8,
        DataType.UINT16,
        DataType.UINT32,
    }
)


def _int_setter(datatype: DataType) -> ValueSetter:
    low, high = INTEGER_RANGES[datatype]
    label = datatype.name

    def check(value: Any) -> int:
        if type(value) is not int:
            raise PayloadError(f"{label} needs an int, got {type(value).__name__}")
        if not low <= value <= high:
            raise PayloadError(f"{label} value {value!r} outside {low}..{high}")
        return value

    if datatype in _INT_FIELD_TYPES:

        def set_int32(pm: Any, value: MetricValue) -> None:
            pm.int_value = check(value) & _U32

        return set_int32

    def set_int64(pm: Any, value: MetricValue) -> None:
        pm.long_value = check(value) & _U64

    return set_int64


def _set_double(pm: Any, value: MetricValue) -> None:
    kind = type(value)
    if kind is not float and kind is not int:
        raise PayloadError(f"DOUBLE needs a float, got {kind.__name__}")
    pm.double_value = value


def _set_float(pm: Any, value: MetricValue) -> None:
    kind = type(value)
    if kind is not float and kind is not int:
        raise PayloadError(f"FLOAT needs a float, got {kind.__name__}")
    if not math.isfinite(value) or -_FLOAT32_MAX <= value <= _FLOAT32_MAX:  # type: ignore[arg-type,operator]
        pm.float_value = value
    else:  # protobuf would silently turn it into infinity
        raise PayloadError(f"Float value {value!r} does not fit 32 bits")


def _set_boolean(pm: Any, value: MetricValue) -> None:
    if type(value) is not bool:
        raise PayloadError(f"Boolean needs a bool, got {type(value).__name__}")
    pm.boolean_value = value


def _string_setter(datatype: DataType) -> ValueSetter:
    label = datatype.name

    def set_string(pm: Any, value: MetricValue) -> None:
        if type(value) is not str:
            raise PayloadError(f"{label} needs a str, got {type(value).__name__}")
        pm.string_value = value

    return set_string


def _bytes_setter(datatype: DataType) -> ValueSetter:
    label = datatype.name

    def set_bytes(pm: Any, value: MetricValue) -> None:
        if type(value) is not bytes:
            raise PayloadError(f"{label} needs bytes, got {type(value).__name__}")
        pm.bytes_value = value

    return set_bytes


def _array_setter(datatype: DataType) -> ValueSetter:
    def set_array(pm: Any, value: MetricValue) -> None:
        pm.bytes_value = encode_array(datatype, value)  # type: ignore[arg-type]

    return set_array


def _opaque_setter(datatype: DataType) -> ValueSetter:
    label = datatype.name
    field = "dataset_value" if datatype is DataType.DATASET else "template_value"

    def set_opaque(pm: Any, value: MetricValue) -> None:
        if type(value) is not bytes:
            raise PayloadError(f"{label} needs its serialized sub-message as bytes")
        try:
            getattr(pm, field).ParseFromString(value)
        except DecodeError as exc:
            raise PayloadError(f"{label} bytes are not a valid sub-message") from exc

    return set_opaque


def _setters() -> dict[DataType, ValueSetter]:
    table: dict[DataType, ValueSetter] = {dt: _int_setter(dt) for dt in INTEGER_RANGES}
    table[DataType.DOUBLE] = _set_double
    table[DataType.FLOAT] = _set_float
    table[DataType.BOOLEAN] = _set_boolean
    for datatype in (DataType.STRING, DataType.TEXT, DataType.UUID):
        table[datatype] = _string_setter(datatype)
    for datatype in (DataType.BYTES, DataType.FILE):
        table[datatype] = _bytes_setter(datatype)
    for datatype in (DataType.DATASET, DataType.TEMPLATE):
        table[datatype] = _opaque_setter(datatype)
    for datatype in ARRAY_TYPES:
        table[datatype] = _array_setter(datatype)
    return table


#: The setter of every supported datatype (Unknown, PropertySet and PropertySetList have none).
VALUE_SETTERS: Mapping[DataType, ValueSetter] = _setters()


def set_value(pm: Any, datatype: DataType, value: MetricValue) -> None:
    """Write ``value`` into the oneof field ``datatype`` uses; PayloadError on a bad value."""
    setter = VALUE_SETTERS.get(datatype)
    if setter is None:
        raise PayloadError(f"unsupported datatype {datatype.name} ({int(datatype)})")
    setter(pm, value)
