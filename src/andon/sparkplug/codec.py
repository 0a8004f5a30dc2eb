"""Sparkplug B payload codec: ``model.Payload`` <-> protobuf bytes, and the STATE JSON.

Integer encoding (checked against public implementations, which disagree): Int8/16/32 go into
``int_value`` (uint32) as 32-bit two's complement, i.e. sign-extended (what Tahu Java and most
devices write); Int64 into ``long_value`` as 64-bit two's complement. Decoding accepts the
sign-extended form *and* the width-specific form Tahu Python writes (Int8 -1 as 255), from
either ``int_value`` or ``long_value`` (Tahu Java puts UInt32 in ``long_value``).

Data messages usually omit ``datatype``. Such a metric decodes with ``datatype=None`` and the
*raw* wire value (an unsigned int, float, bool, str or bytes); the receiver, which knows the
datatype from the birth, turns it into the typed value with :func:`resolve_value`.

DataSet and Template values are not mapped: they decode to the serialized sub-message
(``bytes``) under their datatype, and encode back from those bytes, so they pass through
unchanged. PropertySet/PropertySetList metric values and nested property sets in properties
are not supported (the former raises PayloadError, the latter are skipped on decode).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from andon.sparkplug import sparkplug_b_pb2 as pb
from andon.sparkplug.arrays import decode_array
from andon.sparkplug.errors import PayloadError
from andon.sparkplug.model import (
    ARRAY_TYPES,
    INTEGER_RANGES,
    DataType,
    Metric,
    MetricValue,
    Payload,
    PropertyValue,
)
from andon.sparkplug.wire_values import VALUE_SETTERS, set_value

__all__ = [
    "DATATYPE_BY_CODE",
    "HostState",
    "PayloadError",
    "decode_message",
    "decode_metric_at",
    "decode_payload",
    "decode_properties",
    "decode_state",
    "encode_data_columns",
    "encode_payload",
    "encode_state",
    "parse_payload",
    "resolve_value",
]

_U32 = 0xFFFF_FFFF
_U64 = 0xFFFF_FFFF_FFFF_FFFF
_SIGNED_BITS = {DataType.INT8: 8, DataType.INT16: 16, DataType.INT32: 32, DataType.INT64: 64}
_UNSIGNED_INTS = frozenset(
    {DataType.UINT8, DataType.UINT16, DataType.UINT32, DataType.UINT64, DataType.DATETIME}
)
_STRING_TYPES = frozenset({DataType.STRING, DataType.TEXT, DataType.UUID})
_BYTES_TYPES = frozenset({DataType.BYTES, DataType.FILE})
_OPAQUE_TYPES = frozenset({DataType.DATASET, DataType.TEMPLATE})
_DATATYPE_BY_CODE = {int(dt): dt for dt in DataType}
#: Wire datatype code -> DataType.
DATATYPE_BY_CODE: Mapping[int, DataType] = _DATATYPE_BY_CODE


# ---------------------------------------------------------------------------------------------
# Values


def _signed_from_wire(datatype: DataType, raw: int) -> int:
    bits = _SIGNED_BITS[datatype]
    half = 1 << (bits - 1)
    if raw < half:
        return raw
    if raw < (1 << bits):  # width-specific two's complement (Tahu Python)
        return raw - (1 << bits)
    if bits < 32 and (1 << 32) - half <= raw < (1 << 32):  # sign-extended into uint32
        return raw - (1 << 32)
    if (1 << 64) - half <= raw < (1 << 64):  # sign-extended into uint64
        return raw - (1 << 64)
    raise PayloadError(f"{datatype.name} wire value {raw} is out of range")


def resolve_value(datatype: DataType, raw: MetricValue) -> MetricValue:
    """Turn a raw wire value into the typed value of ``datatype``; PayloadError on mismatch.

    ``None`` (a null) resolves to ``None`` for every datatype.
    """
    if raw is None:
        return None
    kind = type(raw)
    if datatype in _SIGNED_BITS:
        if kind is int:
            return _signed_from_wire(datatype, raw)  # type: ignore[arg-type]
    elif datatype in _UNSIGNED_INTS:
        if kind is int:
            high = INTEGER_RANGES[datatype][1]
            if raw > high:  # type: ignore[operator]
                raise PayloadError(f"{datatype.name} value {raw!r} above {high}")
            return raw
    elif datatype is DataType.FLOAT or datatype is DataType.DOUBLE:
        if kind is float:
            return raw
    elif datatype is DataType.BOOLEAN:
        if kind is bool:
            return raw
    elif datatype in _STRING_TYPES:
        if kind is str:
            return raw
    elif datatype in _BYTES_TYPES or datatype in _OPAQUE_TYPES:
        if kind is bytes:
            return raw
    elif datatype in ARRAY_TYPES:
        if kind is bytes:
            return decode_array(datatype, raw)  # type: ignore[arg-type]
    else:
        raise PayloadError(f"unsupported datatype {datatype.name} ({int(datatype)})")
    raise PayloadError(f"{datatype.name} metric carries a {kind.__name__} value")


def _infer_datatype(value: MetricValue) -> DataType:
    """The datatype used to put an untyped value on the wire (the datatype itself is omitted)."""
    kind = type(value)
    if kind is bool:
        return DataType.BOOLEAN
    if kind is int:
        return DataType.INT64 if value < 0 else DataType.UINT64  # type: ignore[operator]
    if kind is float:
        return DataType.DOUBLE
    if kind is str:
        return DataType.STRING
    if kind is bytes:
        return DataType.BYTES
    raise PayloadError(f"cannot encode a {kind.__name__} without a datatype")


# ---------------------------------------------------------------------------------------------
# Properties


def _encode_properties(target: Any, properties: Mapping[str, PropertyValue]) -> None:
    for key, value in properties.items():
        target.keys.append(key)
        pv = target.values.add()
        kind = type(value)
        if value is None:
            pv.type = DataType.STRING
            pv.is_null = True
        elif kind is bool:
            pv.type = DataType.BOOLEAN
            pv.boolean_value = value
        elif kind is int:
            if -(2**31) <= value < 2**31:  # type: ignore[operator]
                pv.type = DataType.INT32  # also the reserved Quality property's type
                pv.int_value = value & _U32  # type: ignore[operator]
            elif -(2**63) <= value < 2**63:  # type: ignore[operator]
                pv.type = DataType.INT64
                pv.long_value = value & _U64  # type: ignore[operator]
            elif value <= _U64:  # type: ignore[operator]
                pv.type = DataType.UINT64
                pv.long_value = value
            else:
                raise PayloadError(f"property {key!r}: int {value} does not fit 64 bits")
        elif kind is float:
            pv.type = DataType.DOUBLE
            pv.double_value = value
        elif kind is str:
            pv.type = DataType.STRING
            pv.string_value = value
        else:
            raise PayloadError(f"property {key!r}: unsupported value type {kind.__name__}")


def decode_properties(source: Any) -> dict[str, PropertyValue]:
    """A metric's ``properties`` sub-message as a dict; PayloadError when malformed."""
    return _decode_properties(source)


def _decode_properties(source: Any) -> dict[str, PropertyValue]:
    keys = source.keys
    values = source.values
    if len(keys) != len(values):
        raise PayloadError(f"property set has {len(keys)} keys but {len(values)} values")
    result: dict[str, PropertyValue] = {}
    for key, pv in zip(keys, values, strict=True):
        if pv.is_null:
            result[key] = None
            continue
        field = pv.WhichOneof("value")
        if field is None:
            raise PayloadError(f"property {key!r} has neither a value nor is_null")
        if field in ("propertyset_value", "propertysets_value", "extension_value"):
            continue  # nested property sets are not used by Andon (module docstring)
        raw = getattr(pv, field)
        code = pv.type
        datatype = _DATATYPE_BY_CODE.get(code)
        if datatype is None:
            raise PayloadError(f"property {key!r}: unknown datatype {code}")
        result[key] = resolve_value(datatype, raw)  # type: ignore[assignment]
    return result


# ---------------------------------------------------------------------------------------------
# Payload


def encode_payload(payload: Payload, *, omit_datatypes: bool = False) -> bytes:
    """Serialize ``payload``. Raises PayloadError when a value does not fit its datatype.

    With ``omit_datatypes`` (data and command messages) each metric's datatype still decides how
    its value is encoded, but is not written. A metric whose ``datatype`` is None is encoded by
    its Python type (bool, int, float, str, bytes) without a datatype.
    """
    out = pb.Payload()
    if payload.timestamp is not None:
        out.timestamp = payload.timestamp
    if payload.seq is not None:
        out.seq = payload.seq
    if payload.uuid is not None:
        out.uuid = payload.uuid
    if payload.body is not None:
        out.body = payload.body
    add = out.metrics.add
    for metric in payload.metrics:
        pm = add()
        if metric.name is not None:
            pm.name = metric.name
        if metric.alias is not None:
            pm.alias = metric.alias
        if metric.timestamp is not None:
            pm.timestamp = metric.timestamp
        datatype = metric.datatype
        if datatype is not None and not omit_datatypes:
            pm.datatype = datatype
        if metric.is_historical:
            pm.is_historical = True
        if metric.is_transient:
            pm.is_transient = True
        if metric.properties:
            _encode_properties(pm.properties, metric.properties)
        value = metric.value
        if value is None:
            pm.is_null = True
        else:
            try:
                set_value(pm, _infer_datatype(value) if datatype is None else datatype, value)
            except PayloadError as exc:
                raise PayloadError(f"metric {metric.name or metric.alias!r}: {exc}") from None
    try:
        return out.SerializeToString()
    except ValueError as exc:  # e.g. an out-of-range timestamp or alias
        raise PayloadError(f"cannot serialize payload: {exc}") from exc


def encode_data_columns(
    timestamp: int,
    seq: int,
    keys: Sequence[str] | Sequence[int],
    datatypes: Sequence[DataType],
    values: Sequence[MetricValue],
    timestamps: Sequence[int],
    *,
    by_alias: bool,
    properties: Mapping[int, Mapping[str, PropertyValue]],
    historical: bool,
) -> bytes:
    """A data message (datatypes omitted) from columns, without a ``Metric`` per value.

    The same bytes as :func:`encode_payload` with ``omit_datatypes`` of a payload with this
    timestamp and seq whose metric ``i`` has the alias (``by_alias``) or name ``keys[i]``,
    ``values[i]`` of ``datatypes[i]``, ``timestamps[i]``, ``properties.get(i)`` and
    ``is_historical=historical``. For the store-and-forward flush, which sends every spooled
    value this way.
    """
    if not len(keys) == len(datatypes) == len(values) == len(timestamps):
        raise ValueError("data columns differ in length")
    out = pb.Payload()
    out.timestamp = timestamp
    out.seq = seq
    add = out.metrics.add
    setters = VALUE_SETTERS
    for index, (key, datatype, value, ts) in enumerate(
        zip(keys, datatypes, values, timestamps, strict=True)
    ):
        pm: Any = add()  # the key is an alias (int) or a name (str), as ``by_alias`` says
        if by_alias:
            pm.alias = key
        else:
            pm.name = key
        pm.timestamp = ts
        if historical:
            pm.is_historical = True
        if properties and (metric_properties := properties.get(index)):
            _encode_properties(pm.properties, metric_properties)
        if value is None:
            pm.is_null = True
            continue
        setter = setters.get(datatype)
        try:
            if setter is None:
                raise PayloadError(f"unsupported datatype {datatype.name} ({int(datatype)})")
            setter(pm, value)
        except PayloadError as exc:
            raise PayloadError(f"metric {key!r}: {exc}") from None
    try:
        return out.SerializeToString()
    except ValueError as exc:  # e.g. an out-of-range timestamp or alias
        raise PayloadError(f"cannot serialize payload: {exc}") from exc


def _decode_metric(pm: Any) -> Metric:
    datatype: DataType | None = None
    if pm.HasField("datatype"):
        code = pm.datatype
        datatype = _DATATYPE_BY_CODE.get(code)
        if datatype is None:
            raise PayloadError(f"unknown datatype {code}")
    value: MetricValue = None
    if not pm.is_null:
        field = pm.WhichOneof("value")
        if field is None:
            raise PayloadError("metric has neither a value nor is_null")
        if field in ("dataset_value", "template_value"):
            value = getattr(pm, field).SerializeToString()
        elif field == "extension_value":
            raise PayloadError("metric uses an extension value, which is not supported")
        else:
            value = getattr(pm, field)
        if datatype is not None:
            value = resolve_value(datatype, value)
    return Metric(
        name=pm.name if pm.HasField("name") else None,
        value=value,
        datatype=datatype,
        timestamp=pm.timestamp if pm.HasField("timestamp") else None,
        alias=pm.alias if pm.HasField("alias") else None,
        is_historical=pm.is_historical,
        is_transient=pm.is_transient,
        properties=_decode_properties(pm.properties) if pm.HasField("properties") else {},
    )


def parse_payload(data: bytes) -> Any:
    """Parse ``data`` into the protobuf ``Payload`` message without mapping its metrics.

    For the host's data fast path (``andon.sparkplug.host_edge``), which resolves metrics
    straight from the message. Raises PayloadError, and only that, when ``data`` is not a
    protobuf payload; the metrics are checked by :func:`decode_message` / :func:`decode_metric_at`.
    """
    message = pb.Payload()
    try:
        message.ParseFromString(data)
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise PayloadError(f"not a Sparkplug B payload: {exc}") from exc
    return message


def decode_metric_at(index: int, pm: Any) -> Metric:
    """Decode metric number ``index`` of a parsed payload; PayloadError (naming it) if invalid."""
    try:
        return _decode_metric(pm)
    except PayloadError as exc:
        label = pm.name if pm.HasField("name") else f"alias {pm.alias}"
        raise PayloadError(f"metric #{index} ({label}): {exc}") from None


def decode_message(message: Any) -> Payload:
    """Map a message from :func:`parse_payload`; PayloadError when a metric is malformed."""
    return Payload(
        timestamp=message.timestamp if message.HasField("timestamp") else None,
        metrics=tuple(decode_metric_at(index, pm) for index, pm in enumerate(message.metrics)),
        seq=message.seq if message.HasField("seq") else None,
        uuid=message.uuid if message.HasField("uuid") else None,
        body=message.body if message.HasField("body") else None,
    )


def decode_payload(data: bytes) -> Payload:
    """Parse a Sparkplug B protobuf payload. Raises PayloadError, and only that, when malformed."""
    return decode_message(parse_payload(data))


# ---------------------------------------------------------------------------------------------
# STATE (Sparkplug 3.0 host application state, JSON)


@dataclass(frozen=True, slots=True)
class HostState:
    """A decoded ``spBv1.0/STATE/<host_id>`` payload."""

    online: bool
    timestamp: int


def encode_state(online: bool, timestamp_ms: int) -> bytes:
    return json.dumps(
        {"online": bool(online), "timestamp": int(timestamp_ms)}, separators=(",", ":")
    ).encode()


def decode_state(data: bytes) -> HostState:
    """Parse a STATE payload ``{"online": bool, "timestamp": int}``; PayloadError otherwise."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise PayloadError(f"STATE payload is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise PayloadError("STATE payload must be a JSON object")
    online = document.get("online")
    timestamp = document.get("timestamp")
    if type(online) is not bool:
        raise PayloadError(f"STATE 'online' must be true or false, got {online!r}")
    if type(timestamp) is not int or timestamp < 0:
        raise PayloadError(f"STATE 'timestamp' must be a non-negative int, got {timestamp!r}")
    return HostState(online=online, timestamp=timestamp)
