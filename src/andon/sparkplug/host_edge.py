"""What a host application remembers about one edge node, and birth/data metric resolution.

Internal to :mod:`andon.sparkplug.host`; kept apart so each file stays readable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from andon.sparkplug.codec import decode_metric_at, decode_properties, resolve_value
from andon.sparkplug.errors import PayloadError
from andon.sparkplug.host_actions import (
    DeviceOffline,
    EdgeNodeStats,
    HostAction,
    MetricsStale,
    NodeOffline,
    ReceivedMetric,
)
from andon.sparkplug.model import DataType, Metric, Payload, Quality

__all__ = [
    "EdgeNodeState",
    "UnknownAlias",
    "UnknownMetric",
    "metrics_from_birth",
    "metrics_from_data",
    "resolve_data_message",
]


class UnknownAlias(LookupError):
    """A data message used an alias that no current birth defines."""


class UnknownMetric(LookupError):
    """A data message named a metric that is not in the birth."""


# Datatypes whose raw wire value is already the final value when its Python type matches:
# the hot path skips resolve_value for them.
_PASS_THROUGH: dict[DataType, type] = {
    DataType.DOUBLE: float,
    DataType.FLOAT: float,
    DataType.BOOLEAN: bool,
    DataType.STRING: str,
    DataType.TEXT: str,
    DataType.UUID: str,
    DataType.BYTES: bytes,
    DataType.FILE: bytes,
    DataType.UINT64: int,
    DataType.DATETIME: int,
}
_QUALITY_CODES = {0: Quality.BAD, 192: Quality.GOOD, 500: Quality.STALE}
#: Value fields the fast path reads as they are; the others need the codec's handling
#: (DataSet/Template sub-messages are serialized, extension values are rejected).
_PLAIN_VALUE_FIELDS = frozenset(
    {
        "int_value",
        "long_value",
        "float_value",
        "double_value",
        "boolean_value",
        "string_value",
        "bytes_value",
    }
)


@dataclass(slots=True)
class EdgeNodeState:
    group_id: str
    edge_node_id: str
    online: bool = False
    born: bool = False
    bd_seq: int | None = None
    expected_seq: int | None = None
    #: Birth metrics per device (None = the node): name -> datatype.
    metrics: dict[str | None, dict[str, DataType]] = field(default_factory=dict)
    #: Per device, the birth metrics marked read-only (``READ_ONLY_PROPERTY``).
    read_only: dict[str | None, frozenset[str]] = field(default_factory=dict)
    #: One alias map for the whole edge node: alias -> (device, name, datatype).
    aliases: dict[int, tuple[str | None, str, DataType]] = field(default_factory=dict)
    devices_online: set[str] = field(default_factory=set)
    missing_seqs: set[int] = field(default_factory=set)
    gap_deadline_ms: int | None = None
    last_rebirth_request_ms: int | None = None
    last_birth_ms: int | None = None
    last_seen_ms: int | None = None
    malformed: int = 0
    seq_gaps: int = 0
    rebirth_requests: int = 0
    unknown_alias: int = 0
    before_birth: int = 0

    def stats(self) -> EdgeNodeStats:
        return EdgeNodeStats(
            group_id=self.group_id,
            edge_node_id=self.edge_node_id,
            online=self.online,
            devices=tuple(sorted(self.devices_online)),
            malformed=self.malformed,
            seq_gaps=self.seq_gaps,
            rebirth_requests=self.rebirth_requests,
            unknown_alias=self.unknown_alias,
            before_birth=self.before_birth,
            last_birth_ms=self.last_birth_ms,
            last_seen_ms=self.last_seen_ms,
        )

    def clear_gap(self) -> None:
        self.missing_seqs.clear()
        self.gap_deadline_ms = None

    def start_session(
        self, bd_seq: int, seq: int, table: dict[str, DataType], receive_ms: int
    ) -> None:
        """Apply an accepted NBIRTH (any seq 0-255 resets the expected next one)."""
        self.metrics = {None: table}
        self.read_only = {}
        self.devices_online.clear()
        self.bd_seq = bd_seq
        self.expected_seq = (seq + 1) % 256
        self.online = True
        self.born = True
        self.last_birth_ms = receive_ms
        self.clear_gap()

    def device_offline(self, device_id: str, at_ms: int) -> list[HostAction]:
        if device_id not in self.devices_online:
            return []
        self.devices_online.discard(device_id)
        names = tuple(self.metrics.get(device_id, {}))
        return [
            DeviceOffline(self.group_id, self.edge_node_id, device_id, at_ms),
            MetricsStale(self.group_id, self.edge_node_id, device_id, names, at_ms),
        ]

    def devices_offline(self, at_ms: int) -> list[HostAction]:
        actions: list[HostAction] = []
        for device_id in sorted(self.devices_online):
            actions.extend(self.device_offline(device_id, at_ms))
        return actions

    def go_offline(self, at_ms: int) -> list[HostAction]:
        """Node offline, its metrics stale, every device offline and stale (NDEATH, rebirth)."""
        self.born = False
        self.clear_gap()
        if not self.online:
            return []
        self.online = False
        names = tuple(self.metrics.get(None, {}))
        actions: list[HostAction] = [
            NodeOffline(self.group_id, self.edge_node_id, at_ms),
            MetricsStale(self.group_id, self.edge_node_id, None, names, at_ms),
        ]
        actions.extend(self.devices_offline(at_ms))
        return actions


def _quality(properties: object) -> Quality:
    if not properties:
        return Quality.GOOD
    raw = properties.get("Quality")  # type: ignore[attr-defined]
    return _QUALITY_CODES.get(raw, Quality.GOOD) if type(raw) is int else Quality.GOOD


def metrics_from_birth(
    node: EdgeNodeState, device_id: str | None, payload: Payload, receive_ms: int
) -> tuple[dict[str, DataType], tuple[ReceivedMetric, ...]]:
    """Validate a birth's metrics and rebuild the alias map (PayloadError when invalid).

    An NBIRTH (``device_id`` None) replaces the whole alias map; a DBIRTH replaces that
    device's aliases. Nothing is changed when the birth is invalid.
    """
    table: dict[str, DataType] = {}
    new_aliases: dict[int, tuple[str | None, str, DataType]] = {}
    received: list[ReceivedMetric] = []
    default_ts = payload.timestamp if payload.timestamp is not None else receive_ms
    if device_id is None:
        kept: dict[int, tuple[str | None, str, DataType]] = {}
    else:
        kept = {a: v for a, v in node.aliases.items() if v[0] != device_id}
    for metric in payload.metrics:
        name, datatype = metric.name, metric.datatype
        if not name or datatype is None:
            raise PayloadError(f"birth metric {name or metric.alias!r} lacks name or datatype")
        if name in table:
            raise PayloadError(f"birth repeats metric {name!r}")
        table[name] = datatype
        if metric.alias is not None:
            if metric.alias in kept or metric.alias in new_aliases:
                raise PayloadError(f"alias {metric.alias} of {name!r} is already in use")
            new_aliases[metric.alias] = (device_id, name, datatype)
        received.append(
            ReceivedMetric(
                name,
                datatype,
                metric.value,
                metric.timestamp if metric.timestamp is not None else default_ts,
                metric.is_historical,
                metric.is_transient,
                _quality(metric.properties),
            )
        )
    kept.update(new_aliases)
    node.aliases = kept
    return table, tuple(received)


def _resolve_metric(
    table: dict[str, DataType],
    aliases: dict[int, tuple[str | None, str, DataType]],
    device_id: str | None,
    metric: Metric,
    default_ts: int,
) -> ReceivedMetric:
    """One decoded data metric resolved against the birth (see :func:`metrics_from_data`)."""
    name = metric.name
    if name is None:
        entry = aliases.get(metric.alias) if metric.alias is not None else None
        if entry is None or entry[0] != device_id:
            raise UnknownAlias(f"unknown alias {metric.alias!r} for device {device_id!r}")
        name, datatype = entry[1], entry[2]
    else:
        found = table.get(name)
        if found is None:
            raise UnknownMetric(f"metric {name!r} is not in the birth of {device_id!r}")
        datatype = found
    raw = metric.value
    if metric.datatype is not None:  # the codec already typed the value
        if metric.datatype != datatype:
            sent = metric.datatype.name
            raise PayloadError(f"metric {name!r} was born {datatype.name}, sent {sent}")
        value = raw
    elif type(raw) is _PASS_THROUGH.get(datatype):
        value = raw
    else:
        value = resolve_value(datatype, raw)
    ts = metric.timestamp
    return ReceivedMetric(
        name,
        datatype,
        value,
        default_ts if ts is None else ts,
        metric.is_historical,
        metric.is_transient,
        _quality(metric.properties) if metric.properties else Quality.GOOD,
    )


def metrics_from_data(
    node: EdgeNodeState, device_id: str | None, payload: Payload, receive_ms: int
) -> tuple[ReceivedMetric, ...]:
    """Resolve NDATA/DDATA metrics by alias or name against the birth.

    Raises UnknownAlias / UnknownMetric, or PayloadError for a value not matching its datatype.
    The general path, for a decoded ``Payload``; the host uses :func:`resolve_data_message`.
    """
    table = node.metrics.get(device_id, {})
    aliases = node.aliases
    default_ts = payload.timestamp if payload.timestamp is not None else receive_ms
    return tuple(
        _resolve_metric(table, aliases, device_id, metric, default_ts) for metric in payload.metrics
    )


# One function on purpose: it runs per value at ingest rates, where a call per metric costs ~10 %.
def resolve_data_message(  # noqa: PLR0915
    node: EdgeNodeState, device_id: str | None, message: Any, receive_ms: int
) -> tuple[ReceivedMetric, ...] | LookupError | PayloadError:
    """The data fast path: NDATA/DDATA metrics resolved straight from the parsed protobuf.

    ``message`` comes from :func:`andon.sparkplug.codec.parse_payload`. Gives exactly what
    ``metrics_from_data(node, device_id, decode_payload(data), receive_ms)`` gives, without
    building a ``Metric`` per value, but splits its failures by when the general path meets
    them: a malformed metric (what ``decode_payload`` rejects, with its message) *raises*
    PayloadError; a resolution failure (UnknownAlias, UnknownMetric, or a PayloadError for a
    value not matching its birth datatype) is *returned*, so the caller can check the seq
    first, as it does between decoding and resolving. A malformed metric anywhere wins over
    a resolution failure, as decoding comes first.
    """
    table = node.metrics.get(device_id, {})
    aliases = node.aliases
    default_ts = message.timestamp
    if not default_ts and not message.HasField("timestamp"):
        default_ts = receive_ms
    good = Quality.GOOD
    pass_through = _PASS_THROUGH
    plain = _PLAIN_VALUE_FIELDS
    out: list[ReceivedMetric] = []
    append = out.append
    # tuple.__new__ skips the named tuple's generated Python __new__ (one call per value).
    new_tuple = tuple.__new__
    failure: LookupError | PayloadError | None = None
    for index, pm in enumerate(message.metrics):
        if failure is not None:  # only a malformed metric can still change the outcome
            decode_metric_at(index, pm)
            continue
        # The usual metric: no datatype, known alias or name, a plain value or null. Anything
        # else (``datatype`` left None) takes the general path, which raises or records the
        # exact error the general path gives.
        datatype: DataType | None = None
        if not (pm.datatype or pm.HasField("datatype")):
            name = pm.name
            if name or pm.HasField("name"):
                datatype = table.get(name)
            else:
                alias = pm.alias
                entry = aliases.get(alias)
                if entry is not None and entry[0] == device_id and (alias or pm.HasField("alias")):
                    name = entry[1]
                    datatype = entry[2]
        if datatype is not None:
            value: Any = None
            if not pm.is_null:
                field_name = pm.WhichOneof("value")
                if field_name in plain:
                    value = getattr(pm, field_name)
                    if type(value) is not pass_through.get(datatype):
                        try:
                            value = resolve_value(datatype, value)
                        except PayloadError:
                            datatype = None
                else:  # no value or an extension (malformed), DataSet or Template
                    datatype = None
            quality = good
            if datatype is not None and pm.HasField("properties"):
                try:
                    properties = decode_properties(pm.properties)
                except PayloadError:
                    datatype = None
                else:
                    quality = _quality(properties) if properties else good
        if datatype is None:
            metric = decode_metric_at(index, pm)  # raises if malformed
            try:
                append(_resolve_metric(table, aliases, device_id, metric, default_ts))
            except (LookupError, PayloadError) as exc:
                failure = exc
            continue
        ts = pm.timestamp
        if not ts and not pm.HasField("timestamp"):
            ts = default_ts
        append(
            new_tuple(
                ReceivedMetric,
                (name, datatype, value, ts, pm.is_historical, pm.is_transient, quality),
            )
        )
    return tuple(out) if failure is None else failure
