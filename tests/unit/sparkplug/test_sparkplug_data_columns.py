"""The data fast path (``encode_data_columns``, ``EdgeNodeSession.data_columns``): the same
bytes and the same errors as ``encode_payload`` / ``EdgeNodeSession.data``."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from andon.sparkplug.codec import decode_payload, encode_data_columns, encode_payload
from andon.sparkplug.edge_node import EdgeNodeSession
from andon.sparkplug.errors import PayloadError, SessionError
from andon.sparkplug.model import (
    ARRAY_TYPES,
    INTEGER_RANGES,
    DataType,
    Metric,
    MetricValue,
    Payload,
    PropertyValue,
)
from andon.sparkplug.wire_values import VALUE_SETTERS

_TEXT = st.text(max_size=12)
_VALUES: dict[DataType, st.SearchStrategy[MetricValue]] = {
    **{dt: st.integers(low, high) for dt, (low, high) in INTEGER_RANGES.items()},
    DataType.FLOAT: st.floats(width=32),
    DataType.DOUBLE: st.floats() | st.integers(-(2**53), 2**53),
    DataType.BOOLEAN: st.booleans(),
    DataType.STRING: _TEXT,
    DataType.TEXT: _TEXT,
    DataType.UUID: st.uuids().map(str),
    DataType.BYTES: st.binary(max_size=20),
    DataType.FILE: st.binary(max_size=20),
    DataType.INT16_ARRAY: st.lists(st.integers(-(2**15), 2**15 - 1), max_size=5).map(tuple),
    DataType.DOUBLE_ARRAY: st.lists(st.floats(allow_nan=False), max_size=5).map(tuple),
    DataType.BOOLEAN_ARRAY: st.lists(st.booleans(), max_size=9).map(tuple),
}
_PROPERTIES = st.dictionaries(
    _TEXT,
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | _TEXT,
    max_size=2,
)


@st.composite
def columns(
    draw: st.DrawFn,
) -> tuple[list[DataType], list[MetricValue], list[int], dict[int, dict[str, PropertyValue]]]:
    datatypes = draw(st.lists(st.sampled_from(sorted(_VALUES)), max_size=8))
    values = [draw(st.none() | _VALUES[dt]) for dt in datatypes]
    timestamps = [draw(st.integers(0, 2**63)) for _ in datatypes]
    drawn = [draw(_PROPERTIES) for _ in datatypes]
    properties = {index: props for index, props in enumerate(drawn) if props}
    return datatypes, values, timestamps, properties


def _slow(
    timestamp: int,
    seq: int,
    keys: list[int] | list[str],
    datatypes: list[DataType],
    values: list[MetricValue],
    timestamps: list[int],
    properties: dict[int, dict[str, PropertyValue]],
    *,
    by_alias: bool,
    historical: bool,
) -> bytes:
    metrics = tuple(
        Metric(
            None if by_alias else key,  # type: ignore[arg-type]
            value,
            datatype,
            timestamp=ts,
            alias=key if by_alias else None,  # type: ignore[arg-type]
            is_historical=historical,
            properties=properties.get(index, {}),
        )
        for index, (key, datatype, value, ts) in enumerate(
            zip(keys, datatypes, values, timestamps, strict=True)
        )
    )
    payload = Payload(timestamp=timestamp, metrics=metrics, seq=seq)
    return encode_payload(payload, omit_datatypes=True)


@given(columns(), st.booleans(), st.booleans(), st.integers(0, 2**63), st.integers(0, 255))
def test_encode_data_columns_is_encode_payload_byte_for_byte(
    data: tuple[list[DataType], list[MetricValue], list[int], dict[int, dict[str, PropertyValue]]],
    by_alias: bool,
    historical: bool,
    timestamp: int,
    seq: int,
) -> None:
    datatypes, values, timestamps, properties = data
    keys: list[int] | list[str] = (
        [7 * i for i in range(len(datatypes))]
        if by_alias
        else [f"m{i}" for i in range(len(datatypes))]
    )
    args = (timestamp, seq, keys, datatypes, values, timestamps)
    fast = encode_data_columns(
        *args, by_alias=by_alias, properties=properties, historical=historical
    )
    assert fast == _slow(*args, properties, by_alias=by_alias, historical=historical)


@pytest.mark.parametrize(
    ("datatype", "value"),
    [
        (DataType.INT8, 128),
        (DataType.UINT64, -1),
        (DataType.INT32, 1.5),
        (DataType.FLOAT, 1e39),
        (DataType.DOUBLE, "x"),
        (DataType.BOOLEAN, 1),
        (DataType.STRING, b"x"),
        (DataType.BYTES, "x"),
        (DataType.DATASET, b"\xff\xff"),
        (DataType.PROPERTYSET, 1),
        (DataType.INT8_ARRAY, (1, 300)),
    ],
)
def test_encode_data_columns_refuses_what_encode_payload_refuses(
    datatype: DataType, value: MetricValue
) -> None:
    args = (1, 0, ["m"], [datatype], [value], [1])
    with pytest.raises(PayloadError) as slow:
        _slow(*args, {}, by_alias=False, historical=False)
    with pytest.raises(PayloadError) as fast:
        encode_data_columns(*args, by_alias=False, properties={}, historical=False)
    assert str(fast.value) == str(slow.value)


def test_every_datatype_with_a_value_has_a_setter() -> None:
    """Arrays and scalars alike: only Unknown and the property-set types are unsupported."""
    unsupported = {DataType.UNKNOWN, DataType.PROPERTYSET, DataType.PROPERTYSETLIST}
    assert set(VALUE_SETTERS) == set(DataType) - unsupported
    for datatype in ARRAY_TYPES:
        empty: list[MetricValue] = [()]
        args = (1, 0, [3], [datatype], empty, [1])
        fast = encode_data_columns(*args, by_alias=True, properties={}, historical=True)
        assert fast == _slow(*args, {}, by_alias=True, historical=True)


BIRTH = {
    "press": [
        Metric("Count", 0, DataType.INT64),
        Metric("Speed", 0.0, DataType.DOUBLE),
        Metric("Mode", "", DataType.STRING),
        Metric("Running", False, DataType.BOOLEAN),
    ]
}


def _sessions(use_aliases: bool) -> tuple[EdgeNodeSession, EdgeNodeSession]:
    pair = []
    for _ in range(2):
        session = EdgeNodeSession("G", "N", bd_seq=None, use_aliases=use_aliases)
        session.next_will(1000)
        session.on_connected(1000)
        session.births([Metric("Uptime", 1, DataType.INT64)], BIRTH, 1001)
        pair.append(session)
    return pair[0], pair[1]


@pytest.mark.parametrize("use_aliases", [True, False])
@pytest.mark.parametrize("historical", [True, False])
def test_data_columns_is_data_byte_for_byte(use_aliases: bool, historical: bool) -> None:
    slow, fast = _sessions(use_aliases)
    names = ["Count", "Speed", "Mode", "Running", "Speed", "Count"]
    values: list[MetricValue] = [5, math.nan, "auto", True, None, -(2**63)]
    timestamps = [2000, 2001, 2002, 2003, 2004, 2005]
    properties: dict[int, dict[str, PropertyValue]] = {1: {"Quality": 0}, 4: {"Quality": 500}}
    for device in ("press", None):
        device_names = names if device else ["Uptime"]
        device_values = values if device else [9]
        device_ts = timestamps if device else [3000]
        props = properties if device else {}
        metrics = [
            Metric(n, v, timestamp=t, properties=props.get(i, {}))
            for i, (n, v, t) in enumerate(zip(device_names, device_values, device_ts, strict=True))
        ]
        expected = slow.data(device, metrics, 4000, historical=historical)
        got = fast.data_columns(
            device,
            device_names,
            device_values,
            device_ts,
            4000,
            properties=props,
            historical=historical,
        )
        assert got == expected
        decoded = decode_payload(got.payload)
        assert decoded.seq == decode_payload(expected.payload).seq
        assert [m.is_historical for m in decoded.metrics] == [historical] * len(device_names)


def test_data_columns_refuses_what_data_refuses_without_taking_a_seq() -> None:
    slow, fast = _sessions(True)
    for device, names in (("press", ["Count", "Nope"]), ("oven", ["Count"])):
        with pytest.raises(SessionError) as refused:
            slow.data(device, [Metric(n, 1, timestamp=1) for n in names], 5)
        with pytest.raises(SessionError) as fast_refused:
            fast.data_columns(device, names, [1] * len(names), [1] * len(names), 5)
        assert str(fast_refused.value) == str(refused.value)
    # Neither consumed a seq: the next message of both carries the same one.
    ok = fast.data_columns("press", ["Count"], [1], [1], 5)
    assert ok == slow.data("press", [Metric("Count", 1, timestamp=1)], 5)
    unborn = EdgeNodeSession("G", "N", bd_seq=None)
    with pytest.raises(SessionError, match="before births"):
        unborn.data_columns(None, [], [], [], 5)
