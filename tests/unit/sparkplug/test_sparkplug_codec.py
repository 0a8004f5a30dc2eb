"""Codec: round trips for every datatype, signed encodings, malformed input -> PayloadError."""

from __future__ import annotations

import contextlib
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from andon.sparkplug import sparkplug_b_pb2 as pb
from andon.sparkplug.codec import (
    HostState,
    decode_payload,
    decode_state,
    encode_payload,
    encode_state,
    resolve_value,
)
from andon.sparkplug.errors import PayloadError
from andon.sparkplug.model import INTEGER_RANGES, DataType, Metric, Payload, Quality

_TEXT = st.text(max_size=20)
_SCALARS: dict[DataType, st.SearchStrategy[object]] = {
    **{dt: st.integers(low, high) for dt, (low, high) in INTEGER_RANGES.items()},
    DataType.FLOAT: st.floats(width=32, allow_nan=False),
    DataType.DOUBLE: st.floats(allow_nan=False),
    DataType.BOOLEAN: st.booleans(),
    DataType.STRING: _TEXT,
    DataType.TEXT: _TEXT,
    DataType.UUID: st.uuids().map(str),
    DataType.BYTES: st.binary(max_size=40),
    DataType.FILE: st.binary(max_size=40),
}


def _array(dt: DataType, element: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.lists(element, max_size=12).map(tuple)


_ARRAYS: dict[DataType, st.SearchStrategy[object]] = {
    DataType.INT8_ARRAY: _array(DataType.INT8_ARRAY, _SCALARS[DataType.INT8]),
    DataType.INT16_ARRAY: _array(DataType.INT16_ARRAY, _SCALARS[DataType.INT16]),
    DataType.INT32_ARRAY: _array(DataType.INT32_ARRAY, _SCALARS[DataType.INT32]),
    DataType.INT64_ARRAY: _array(DataType.INT64_ARRAY, _SCALARS[DataType.INT64]),
    DataType.UINT8_ARRAY: _array(DataType.UINT8_ARRAY, _SCALARS[DataType.UINT8]),
    DataType.UINT16_ARRAY: _array(DataType.UINT16_ARRAY, _SCALARS[DataType.UINT16]),
    DataType.UINT32_ARRAY: _array(DataType.UINT32_ARRAY, _SCALARS[DataType.UINT32]),
    DataType.UINT64_ARRAY: _array(DataType.UINT64_ARRAY, _SCALARS[DataType.UINT64]),
    DataType.FLOAT_ARRAY: _array(DataType.FLOAT_ARRAY, _SCALARS[DataType.FLOAT]),
    DataType.DOUBLE_ARRAY: _array(DataType.DOUBLE_ARRAY, _SCALARS[DataType.DOUBLE]),
    DataType.BOOLEAN_ARRAY: _array(DataType.BOOLEAN_ARRAY, st.booleans()),
    DataType.STRING_ARRAY: _array(
        DataType.STRING_ARRAY, st.text(alphabet=st.characters(exclude_characters="\x00"))
    ),
    DataType.DATETIME_ARRAY: _array(DataType.DATETIME_ARRAY, _SCALARS[DataType.DATETIME]),
}
_ALL = {**_SCALARS, **_ARRAYS}

_PROPERTY_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    _TEXT,
)


@st.composite
def metrics(draw: st.DrawFn) -> Metric:
    datatype = draw(st.sampled_from(sorted(_ALL)))
    value = draw(st.none() | _ALL[datatype])
    return Metric(
        name=draw(st.none() | st.text(min_size=1, max_size=10)),
        value=value,
        datatype=datatype,
        timestamp=draw(st.none() | st.integers(0, 2**64 - 1)),
        alias=draw(st.none() | st.integers(0, 2**64 - 1)),
        is_historical=draw(st.booleans()),
        is_transient=draw(st.booleans()),
        properties=draw(st.dictionaries(_TEXT, _PROPERTY_VALUES, max_size=3)),
    )


payloads = st.builds(
    Payload,
    timestamp=st.none() | st.integers(0, 2**64 - 1),
    metrics=st.lists(metrics(), max_size=5).map(tuple),
    seq=st.none() | st.integers(0, 255),
    uuid=st.none() | _TEXT,
    body=st.none() | st.binary(max_size=20),
)


@given(payloads)
def test_round_trip_every_datatype_nulls_properties_flags(payload: Payload) -> None:
    assert decode_payload(encode_payload(payload)) == payload


@given(payloads)
def test_round_trip_without_datatypes_resolves_with_birth_datatype(payload: Payload) -> None:
    decoded = decode_payload(encode_payload(payload, omit_datatypes=True))
    for sent, got in zip(payload.metrics, decoded.metrics, strict=True):
        assert got.datatype is None
        assert sent.datatype is not None
        assert resolve_value(sent.datatype, got.value) == sent.value
        assert (got.name, got.alias, got.timestamp) == (sent.name, sent.alias, sent.timestamp)


@pytest.mark.parametrize(
    ("datatype", "value"),
    [(dt, bound) for dt, bounds in INTEGER_RANGES.items() for bound in bounds]
    + [(DataType.FLOAT, math.inf), (DataType.DOUBLE, -math.inf), (DataType.DOUBLE, 5e-324)],
)
def test_extremes_round_trip(datatype: DataType, value: object) -> None:
    payload = Payload(timestamp=1, metrics=(Metric("m", value, datatype),))  # type: ignore[arg-type]
    assert decode_payload(encode_payload(payload)) == payload


def test_nan_round_trips() -> None:
    payload = Payload(timestamp=1, metrics=(Metric("m", math.nan, DataType.DOUBLE),))
    value = decode_payload(encode_payload(payload)).metrics[0].value
    assert isinstance(value, float)
    assert math.isnan(value)


def test_signed_integers_use_twos_complement_on_the_wire() -> None:
    payload = Payload(
        timestamp=1,
        metrics=(
            Metric("i8", -1, DataType.INT8),
            Metric("i32", -2, DataType.INT32),
            Metric("i64", -1, DataType.INT64),
        ),
    )
    message = pb.Payload.FromString(encode_payload(payload))
    assert message.metrics[0].int_value == 0xFFFF_FFFF
    assert message.metrics[1].int_value == 0xFFFF_FFFE
    assert message.metrics[2].long_value == 2**64 - 1


@pytest.mark.parametrize(
    ("datatype", "raw", "expected"),
    [
        (DataType.INT8, 255, -1),  # Tahu Python: width-specific two's complement
        (DataType.INT8, 0xFFFF_FF80, -128),  # Tahu Java / devices: sign-extended uint32
        (DataType.INT16, 0x8000, -32768),
        (DataType.INT16, 2**64 - 87, -87),  # sign-extended into long_value
        (DataType.INT32, 2**31, -(2**31)),
        (DataType.UINT32, 2**32 - 1, 2**32 - 1),
    ],
)
def test_decoder_accepts_both_signed_conventions(
    datatype: DataType, raw: int, expected: int
) -> None:
    message = pb.Payload(timestamp=1)
    metric = message.metrics.add(name="m", datatype=datatype)
    if raw < 2**32:
        metric.int_value = raw
    else:
        metric.long_value = raw
    assert decode_payload(message.SerializeToString()).metrics[0].value == expected


def test_quality_property_is_int32_and_maps_to_quality() -> None:
    payload = Payload(
        timestamp=1, metrics=(Metric("m", 1.5, DataType.DOUBLE, properties={"Quality": 500}),)
    )
    message = pb.Payload.FromString(encode_payload(payload))
    assert message.metrics[0].properties.values[0].type == DataType.INT32
    assert decode_payload(message.SerializeToString()).metrics[0].quality is Quality.STALE


def test_boolean_array_layout_matches_the_spec_example() -> None:
    bits = (False, False, True, True, False, True, False, False, True, True, False, True)
    payload = Payload(timestamp=1, metrics=(Metric("b", bits, DataType.BOOLEAN_ARRAY),))
    message = pb.Payload.FromString(encode_payload(payload))
    assert message.metrics[0].bytes_value == bytes([0x0C, 0, 0, 0, 0x34, 0xD0])


def test_int32_array_is_little_endian() -> None:
    payload = Payload(timestamp=1, metrics=(Metric("a", (123456789, -1), DataType.INT32_ARRAY),))
    message = pb.Payload.FromString(encode_payload(payload))
    assert message.metrics[0].bytes_value == struct.pack("<ii", 123456789, -1)


# -- malformed input ----------------------------------------------------------------------------


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_random_bytes_raise_nothing_but_payload_error(data: bytes) -> None:
    with contextlib.suppress(PayloadError):
        decode_payload(data)


@given(payloads, st.data())
def test_truncated_payload_raises_payload_error_or_decodes(
    payload: Payload, data: st.DataObject
) -> None:
    encoded = encode_payload(payload)
    cut = data.draw(st.integers(0, max(0, len(encoded) - 1)))
    with contextlib.suppress(PayloadError):
        decode_payload(encoded[:cut])


def _raw_metric(**fields: object) -> bytes:
    message = pb.Payload(timestamp=1)
    message.metrics.add(name="m", **fields)  # type: ignore[arg-type]
    return message.SerializeToString()


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"\x12\x05\x0a\x03ab", "not a Sparkplug B payload"),
        (_raw_metric(datatype=DataType.INT32, string_value="x"), "Int32|INT32"),
        (_raw_metric(datatype=DataType.BOOLEAN, int_value=1), "BOOLEAN"),
        (_raw_metric(datatype=DataType.INT8, int_value=300), "out of range"),
        (_raw_metric(datatype=DataType.UINT8, int_value=256), "above"),
        (_raw_metric(datatype=DataType.STRING), "neither a value nor is_null"),
        (_raw_metric(datatype=99, int_value=1), "unknown datatype 99"),
        (_raw_metric(datatype=DataType.PROPERTYSET, int_value=1), "unsupported datatype"),
        (_raw_metric(datatype=DataType.INT16_ARRAY, bytes_value=b"\x01"), "multiple of 2"),
    ],
)
def test_malformed_metric_values_raise_payload_error(wire: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        decode_payload(wire)


def test_property_keys_and_values_of_different_length_raise() -> None:
    message = pb.Payload(timestamp=1)
    metric = message.metrics.add(name="m", datatype=DataType.BOOLEAN, boolean_value=True)
    metric.properties.keys.extend(["a", "b"])
    metric.properties.values.add(type=DataType.INT32, int_value=1)
    with pytest.raises(PayloadError, match="2 keys but 1 values"):
        decode_payload(message.SerializeToString())


def test_dataset_and_template_pass_through_as_bytes() -> None:
    message = pb.Payload(timestamp=1)
    metric = message.metrics.add(name="ds", datatype=DataType.DATASET)
    metric.dataset_value.num_of_columns = 1
    metric.dataset_value.columns.append("c")
    template = message.metrics.add(name="t", datatype=DataType.TEMPLATE)
    template.template_value.is_definition = True
    decoded = decode_payload(message.SerializeToString())
    assert all(isinstance(m.value, bytes) for m in decoded.metrics)
    assert pb.Payload.FromString(encode_payload(decoded)) == message


@pytest.mark.parametrize(
    ("datatype", "value"),
    [
        (DataType.INT8, 128),
        (DataType.UINT16, -1),
        (DataType.INT32, 1.0),
        (DataType.BOOLEAN, 1),
        (DataType.STRING, b"x"),
        (DataType.FLOAT, 1e39),
        (DataType.UNKNOWN, 1),
    ],
)
def test_encoding_a_value_that_does_not_fit_raises(datatype: DataType, value: object) -> None:
    with pytest.raises(PayloadError):
        encode_payload(Payload(timestamp=1, metrics=(Metric("m", value, datatype),)))  # type: ignore[arg-type]


# -- STATE --------------------------------------------------------------------------------------


def test_state_round_trip() -> None:
    assert encode_state(True, 123) == b'{"online":true,"timestamp":123}'
    assert decode_state(encode_state(False, 5)) == HostState(online=False, timestamp=5)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"ONLINE",
        b"[]",
        b'{"online":"yes","timestamp":1}',
        b'{"online":true}',
        b'{"online":true,"timestamp":-1}',
        b'{"online":true,"timestamp":1.5}',
        b"\xff",
    ],
)
def test_bad_state_raises_payload_error(data: bytes) -> None:
    with pytest.raises(PayloadError):
        decode_state(data)
