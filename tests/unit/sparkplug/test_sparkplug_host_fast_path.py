"""The host's NDATA/DDATA fast path gives exactly what the general path gives.

The general path is ``decode_payload`` then ``metrics_from_data`` (a ``Metric`` per value); the
fast path, ``parse_payload`` then ``resolve_data_message``, resolves straight from the protobuf.
Messages are built at the wire level so that everything a broken edge can send is covered:
every datatype, raw values in any oneof field, nulls, properties (valid and malformed), flags,
timestamps present, absent or 0, addressing by alias, by name, by both or neither.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from andon.sparkplug import sparkplug_b_pb2 as pb
from andon.sparkplug.codec import decode_payload, encode_payload, parse_payload
from andon.sparkplug.edge_node import EdgeNodeSession
from andon.sparkplug.errors import PayloadError
from andon.sparkplug.host import HostApplicationSession, MetricsReceived
from andon.sparkplug.host_edge import (
    EdgeNodeState,
    metrics_from_data,
    resolve_data_message,
)
from andon.sparkplug.model import DataType, Metric, Payload, Quality

RECEIVE_MS = 1_700_000_999_000
DEVICE = "D1"

# A birth with one node and one device metric of every datatype; aliases from 0 up.
NODE_TABLE = {f"n/{dt.name}": dt for dt in DataType}
DEVICE_TABLE = {f"d/{dt.name}": dt for dt in DataType}
ALIASES: dict[int, tuple[str | None, str, DataType]] = {}
for _index, _dt in enumerate(DataType):
    ALIASES[2 * _index] = (None, f"n/{_dt.name}", _dt)
    ALIASES[2 * _index + 1] = (DEVICE, f"d/{_dt.name}", _dt)


def born_node() -> EdgeNodeState:
    node = EdgeNodeState("G", "E", online=True, born=True, bd_seq=0, expected_seq=1)
    node.metrics = {None: dict(NODE_TABLE), DEVICE: dict(DEVICE_TABLE)}
    node.aliases = dict(ALIASES)
    node.devices_online.add(DEVICE)
    return node


U32 = st.integers(0, 2**32 - 1)
U64 = st.integers(0, 2**64 - 1)
TEXT = st.text(max_size=8)
SMALL_BYTES = st.binary(max_size=12)


def _array_bytes() -> st.SearchStrategy[bytes]:
    """Well-formed arrays of every kind, and arbitrary bytes (often malformed)."""
    return st.one_of(
        SMALL_BYTES,
        st.lists(st.floats(allow_nan=False, width=64), max_size=3).map(
            lambda v: struct.pack(f"<{len(v)}d", *v)
        ),
        st.lists(st.integers(-(2**31), 2**31 - 1), max_size=3).map(
            lambda v: struct.pack(f"<{len(v)}i", *v)
        ),
        st.lists(st.booleans(), max_size=10).map(
            lambda v: (
                struct.pack("<I", len(v))
                + bytes(
                    sum(0x80 >> j for j in range(8) if 8 * i + j < len(v) and v[8 * i + j])
                    for i in range((len(v) + 7) // 8)
                )
            )
        ),
        st.lists(st.text(alphabet="abc", max_size=3), max_size=3).map(
            lambda v: b"".join(s.encode() + b"\x00" for s in v)
        ),
    )


# (oneof field, value strategy); None for no value at all.
VALUE_FIELDS: list[tuple[str | None, st.SearchStrategy[Any]]] = [
    ("int_value", st.one_of(st.sampled_from([0, 1, 127, 128, 255, 2**31, 2**32 - 1]), U32)),
    ("long_value", st.one_of(st.sampled_from([0, 2**63, 2**64 - 1, 2**32]), U64)),
    ("float_value", st.floats(width=32)),
    ("double_value", st.floats()),
    ("boolean_value", st.booleans()),
    ("string_value", TEXT),
    ("bytes_value", _array_bytes()),
    ("dataset_value", st.just(None)),
    ("template_value", st.just(None)),
    ("extension_value", st.just(None)),
    (None, st.just(None)),
]


@st.composite
def properties(draw: st.DrawFn, target: Any, *, valid: bool) -> None:
    """Fill a PropertySet: Quality (valid, unknown or of another type), others, malformed."""
    count = draw(st.integers(0, 3))
    for _ in range(count):
        key = draw(st.sampled_from(["Quality", "engUnit", "x"]))
        target.keys.append(key)
        pv = target.values.add()
        choice = draw(st.integers(0, 4 if valid else 6))
        if choice == 0:
            pv.type = 3
            pv.int_value = draw(st.sampled_from([0, 192, 500, 7, 2**32 - 1]))
        elif choice == 1:
            pv.type = 12
            pv.string_value = draw(TEXT)
        elif choice == 2:
            pv.type = 11
            pv.boolean_value = draw(st.booleans())
        elif choice == 3:
            pv.type = 12
            pv.is_null = True
        elif choice == 4:
            pv.type = draw(st.sampled_from([4, 8, 10, 99]))
            pv.long_value = draw(U64)
        elif choice == 5:
            pv.type = 3  # neither a value nor is_null: malformed
        else:
            pv.type = 20
            pv.propertyset_value.keys.append("nested")  # skipped on decode
    if not valid and draw(st.integers(0, 9)) == 0:
        target.keys.append("dangling")  # keys and values differ in length: malformed


# The oneof field an edge puts each datatype's value in (when it does the right thing).
FIELD_OF: dict[DataType, str] = {
    **dict.fromkeys(
        [DataType.INT8, DataType.INT16, DataType.INT32, DataType.UINT8, DataType.UINT16],
        "int_value",
    ),
    **dict.fromkeys(
        [DataType.UINT32, DataType.INT64, DataType.UINT64, DataType.DATETIME], "long_value"
    ),
    DataType.FLOAT: "float_value",
    DataType.DOUBLE: "double_value",
    DataType.BOOLEAN: "boolean_value",
    **dict.fromkeys([DataType.STRING, DataType.TEXT, DataType.UUID], "string_value"),
    DataType.DATASET: "dataset_value",
    DataType.TEMPLATE: "template_value",
}
FIELD_VALUES = {field: values for field, values in VALUE_FIELDS if field is not None}


@st.composite
def data_metric(draw: st.DrawFn, pm: Any, device_id: str | None) -> None:
    """One NDATA/DDATA metric as a (possibly broken) edge could send it.

    Three in four are plausible (a birth metric of the device, the value in its datatype's
    field, no datatype) so that whole messages often resolve; the rest are anything at all.
    """
    plausible = draw(st.integers(0, 3)) > 0
    if plausible:
        alias = draw(st.sampled_from([a for a, e in ALIASES.items() if e[0] == device_id]))
        _, name, datatype = ALIASES[alias]
        if draw(st.booleans()):
            pm.alias = alias
        else:
            pm.name = name
        field = FIELD_OF.get(datatype, "bytes_value")
        values = FIELD_VALUES[field]
    else:
        addressing = draw(st.sampled_from(["alias", "alias", "name", "both", "none"]))
        if addressing in ("alias", "both"):
            pm.alias = draw(st.one_of(st.sampled_from(sorted(ALIASES)), st.integers(0, 200)))
        if addressing in ("name", "both"):
            known = sorted(NODE_TABLE) + sorted(DEVICE_TABLE)
            pm.name = draw(st.one_of(st.sampled_from(known), st.sampled_from(["", "nope"])))
        if draw(st.integers(0, 3)) == 0:  # data messages should omit it, some edges do not
            pm.datatype = draw(st.sampled_from([*(int(d) for d in DataType), 99]))
        field_or_none, values = draw(st.sampled_from(VALUE_FIELDS))
        field = field_or_none or ""
    timestamp = draw(st.sampled_from(["set", "set", "zero", "absent"]))
    if timestamp == "set":
        pm.timestamp = draw(st.integers(1, 2**45))
    elif timestamp == "zero":
        pm.timestamp = 0
    pm.is_historical = draw(st.booleans())
    pm.is_transient = draw(st.booleans())
    if draw(st.integers(0, 4)) == 0:
        pm.is_null = True
    if field and (not pm.is_null or draw(st.booleans())):
        if field == "dataset_value":
            pm.dataset_value.num_of_columns = draw(st.integers(0, 3))
        elif field == "template_value":
            pm.template_value.template_ref = draw(TEXT)
        elif field == "extension_value":
            pm.extension_value.SetInParent()
        else:
            setattr(pm, field, draw(values))
    if draw(st.integers(0, 4)) == 0:
        draw(properties(pm.properties, valid=plausible))
        pm.properties.SetInParent()


@st.composite
def data_payload(draw: st.DrawFn, device_id: str | None) -> bytes:
    message = pb.Payload()
    if draw(st.booleans()):
        message.timestamp = draw(st.sampled_from([0, 1_700_000_000_000]))
    message.seq = 1
    for _ in range(draw(st.integers(0, 5))):
        draw(data_metric(message.metrics.add(), device_id))
    return message.SerializeToString()


def general(device_id: str | None, data: bytes) -> tuple[str, str]:
    """What the general path makes of ``data``: a malformed payload, a failure or metrics."""
    try:
        payload = decode_payload(data)
    except PayloadError as exc:
        return ("malformed", str(exc))
    try:
        received = metrics_from_data(born_node(), device_id, payload, RECEIVE_MS)
    except (LookupError, PayloadError) as exc:
        return (type(exc).__name__, str(exc))
    return ("metrics", repr(received))  # repr: NaN values compare equal, types are shown


def fast(device_id: str | None, data: bytes) -> tuple[str, str]:
    try:
        result = resolve_data_message(born_node(), device_id, parse_payload(data), RECEIVE_MS)
    except PayloadError as exc:
        return ("malformed", str(exc))
    if isinstance(result, tuple):
        return ("metrics", repr(result))
    return (type(result).__name__, str(result))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fast_path_matches_general_path(data: st.DataObject) -> None:
    device_id = data.draw(st.sampled_from([None, DEVICE]))
    payload = data.draw(data_payload(device_id))
    assert fast(device_id, payload) == general(device_id, payload)


@settings(max_examples=300, deadline=None)
@given(
    datatype=st.sampled_from(sorted(set(DataType) - {DataType.PROPERTYSET, DataType.UNKNOWN})),
    device_id=st.sampled_from([None, DEVICE]),
    by_alias=st.booleans(),
    null=st.booleans(),
    data=st.data(),
)
def test_values_encoded_by_the_edge_codec_match(
    datatype: DataType, device_id: str | None, by_alias: bool, null: bool, data: st.DataObject
) -> None:
    """Typed values as the real encoder writes them, so each datatype is seen succeeding."""
    value = None if null else data.draw(_typed_value(datatype))
    prefix = "n/" if device_id is None else "d/"
    name = prefix + datatype.name
    alias = next(a for a, (d, n, _) in ALIASES.items() if n == name and d == device_id)
    metric = Metric(
        None if by_alias else name,
        value,
        datatype,
        timestamp=data.draw(st.one_of(st.none(), st.integers(0, 2**45))),
        alias=alias if by_alias else None,
        is_historical=data.draw(st.booleans()),
        is_transient=data.draw(st.booleans()),
        properties=data.draw(st.sampled_from([{}, {"Quality": 0}, {"Quality": 500}, {"u": "m"}])),
    )
    encoded = encode_payload(Payload(timestamp=123, metrics=(metric,), seq=1), omit_datatypes=True)
    outcome = fast(device_id, encoded)
    assert outcome == general(device_id, encoded)
    assert outcome[0] == "metrics"


def _typed_value(datatype: DataType) -> st.SearchStrategy[Any]:
    ints = {
        DataType.INT8: (-(2**7), 2**7 - 1),
        DataType.INT16: (-(2**15), 2**15 - 1),
        DataType.INT32: (-(2**31), 2**31 - 1),
        DataType.INT64: (-(2**63), 2**63 - 1),
        DataType.UINT8: (0, 2**8 - 1),
        DataType.UINT16: (0, 2**16 - 1),
        DataType.UINT32: (0, 2**32 - 1),
        DataType.UINT64: (0, 2**64 - 1),
        DataType.DATETIME: (0, 2**64 - 1),
    }
    if datatype in ints:
        low, high = ints[datatype]
        return st.integers(low, high)
    if datatype in (DataType.FLOAT, DataType.DOUBLE):
        return st.floats(width=32 if datatype is DataType.FLOAT else 64, allow_nan=False)
    if datatype is DataType.BOOLEAN:
        return st.booleans()
    if datatype in (DataType.STRING, DataType.TEXT, DataType.UUID):
        return TEXT
    if datatype in (DataType.BYTES, DataType.FILE):
        return SMALL_BYTES
    if datatype is DataType.DATASET:
        return st.just(b"\x08\x02")  # num_of_columns = 2
    if datatype is DataType.TEMPLATE:
        return st.just(b"\x0a\x01t")  # version = "t"
    if datatype is DataType.BOOLEAN_ARRAY:
        return st.lists(st.booleans(), max_size=9).map(tuple)
    if datatype is DataType.STRING_ARRAY:
        return st.lists(st.text(alphabet="xyz", min_size=1, max_size=3), max_size=3).map(tuple)
    if datatype in (DataType.FLOAT_ARRAY, DataType.DOUBLE_ARRAY):
        return st.lists(st.just(1.5), max_size=3).map(tuple)
    if datatype in (DataType.INT8_ARRAY, DataType.INT16_ARRAY, DataType.INT32_ARRAY):
        return st.lists(st.integers(-100, 100), max_size=3).map(tuple)
    if datatype is DataType.INT64_ARRAY:
        return st.lists(st.integers(-(2**40), 2**40), max_size=3).map(tuple)
    if datatype is DataType.PROPERTYSETLIST:
        return st.nothing()
    return st.lists(st.integers(0, 200), max_size=3).map(tuple)  # unsigned / DateTime arrays


# -- the host: which of seq and resolution comes first, and which problem wins ----------------


def _host_and_edge() -> tuple[HostApplicationSession, EdgeNodeSession]:
    edge = EdgeNodeSession("G", "E", bd_seq=None)
    edge.next_will(1000)
    edge.on_connected(1000)
    host = HostApplicationSession("h")
    host.connect(1000)
    births = edge.births(
        [Metric("Temp", 1.0, DataType.DOUBLE)],
        {"press": [Metric("Count", -1, DataType.INT32), Metric("On", False, DataType.BOOLEAN)]},
        1000,
    )
    for publish in births:
        host.on_message(publish.topic, publish.payload, 1000)
    return host, edge


def _ddata(seq: int, *metrics: dict[str, Any]) -> bytes:
    message = pb.Payload(timestamp=5000, seq=seq)
    for fields in metrics:
        pm = message.metrics.add()
        for key, value in fields.items():
            if key == "properties":
                pm.properties.keys.append("Quality")  # no value: malformed
            else:
                setattr(pm, key, value)
    return message.SerializeToString()


def test_host_resolves_ddata_through_the_fast_path() -> None:
    host, edge = _host_and_edge()
    publish = edge.data(
        "press",
        [Metric("Count", -5, timestamp=4000), Metric("On", None, timestamp=4001)],
        5000,
        historical=True,
    )
    (action,) = host.on_message(publish.topic, publish.payload, 6000)
    assert isinstance(action, MetricsReceived)
    assert [
        (m.name, m.value, m.timestamp_ms, m.is_historical, m.quality) for m in action.metrics
    ] == [
        ("Count", -5, 4000, True, Quality.GOOD),
        ("On", None, 4001, True, Quality.GOOD),
    ]


@pytest.mark.parametrize(
    ("metrics", "kind", "next_seq"),
    [
        # Unknown alias in metric 0, malformed metric 1: malformed wins (decoding comes first)
        # and the message is rejected before its seq is checked.
        (({"alias": 999, "double_value": 1.0}, {"name": "Count"}), "malformed_payload", 2),
        (
            ({"alias": 999, "double_value": 1.0}, {"name": "Count", "properties": 1}),
            "malformed_payload",
            2,
        ),
        # Resolution failures come after the seq check: the seq is consumed.
        (
            ({"name": "Nope", "double_value": 1.0}, {"alias": 999, "int_value": 1}),
            "unknown_metric",
            3,
        ),
        (({"alias": 999, "int_value": 1}, {"name": "Nope", "int_value": 1}), "unknown_alias", 3),
        (
            ({"name": "Count", "string_value": "x"}, {"alias": 999, "int_value": 1}),
            "malformed_payload",
            3,
        ),
    ],
)
def test_host_problem_precedence_and_seq(
    metrics: tuple[dict[str, Any], ...], kind: str, next_seq: int
) -> None:
    host, _ = _host_and_edge()
    topic = "spBv1.0/G/DDATA/E/press"
    actions = host.on_message(topic, _ddata(2, *metrics), 6000)  # seq 2 follows DBIRTH's 1
    kinds = [getattr(a, "kind", None) for a in actions]
    assert kinds[0] == kind
    assert "rebirth_requested" in kinds
    node = host._nodes[("G", "E")]
    assert node.expected_seq == next_seq
    assert (node.malformed, node.unknown_alias) == (
        (1, 0) if kind == "malformed_payload" else (0, 1)
    )
