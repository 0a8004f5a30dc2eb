"""Edge-node session rules (SPARKPLUG.md §4-§7, §9; checklist B) as an IO-free state machine.

The caller (the edge agent's MQTT adapter) drives it:

1. ``will = session.next_will(now_ms)`` before every CONNECT; persist ``session.bd_seq``.
2. After CONNACK: ``session.on_connected(now_ms)`` -> ``[Subscribe(...)]`` and, without a
   primary host, ``BirthsRequired()``. With a primary host, ``BirthsRequired()`` comes later from
   ``on_message`` once its STATE says online.
3. On ``BirthsRequired``: publish everything ``session.births(node_metrics, devices, now_ms)``
   returns, in order, then data via ``session.data(...)``.
4. Every received message: ``session.on_message(topic, payload, now_ms)`` -> actions
   (``BirthsRequired``, ``WriteRequested``, ``CommandRejected``, ``Publish`` + ``Disconnect``,
   ``Problem``). Never raises on bad input.
5. Intentional disconnect: publish ``session.death(now_ms)``, then DISCONNECT.
6. Connection lost: ``session.on_disconnected()``.

Misuse by the caller (data before births, unknown device or metric) raises ``SessionError``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from andon.sparkplug.actions import Disconnect, Problem, Publish, Subscribe, WillMessage
from andon.sparkplug.codec import (
    decode_payload,
    decode_state,
    encode_data_columns,
    encode_payload,
    resolve_value,
)
from andon.sparkplug.errors import PayloadError, SessionError, TopicError
from andon.sparkplug.model import DataType, Metric, MetricValue, Payload, PropertyValue
from andon.sparkplug.topic import (
    NAMESPACE,
    MessageType,
    device_topic,
    node_topic,
    parse_topic,
    state_topic,
)

__all__ = [
    "BDSEQ_METRIC",
    "FENCE_EPOCH_METRIC",
    "READ_ONLY_PROPERTY",
    "REBIRTH_METRIC",
    "BirthsRequired",
    "CommandRejected",
    "EdgeAction",
    "EdgeNodeSession",
    "WriteRequested",
]

BDSEQ_METRIC = "bdSeq"
REBIRTH_METRIC = "Node Control/Rebirth"
#: Andon extension: the cluster epoch of the commanding host (DESIGN.md §5 fencing), Int64.
FENCE_EPOCH_METRIC = "Andon/FenceEpoch"
#: Birth metric property (Boolean): true on a metric that accepts no command. Andon's edges set
#: it on every device metric not configured writable; the host refuses writes to such metrics
#: before sending anything. A metric without it may be written (the edge has the last word).
READ_ONLY_PROPERTY = "readOnly"
_RESERVED = frozenset({BDSEQ_METRIC, REBIRTH_METRIC})


@dataclass(frozen=True, slots=True)
class BirthsRequired:
    """Publish a full birth sequence now (``EdgeNodeSession.births``)."""


@dataclass(frozen=True, slots=True)
class WriteRequested:
    """A command asks to write ``metrics`` (by name, typed per the birth) to the equipment."""

    device_id: str | None
    metrics: tuple[Metric, ...]
    fence_epoch: int | None


@dataclass(frozen=True, slots=True)
class CommandRejected:
    """A command was refused (stale fence epoch, unknown metric or device, wrong type)."""

    device_id: str | None
    reason: str
    fence_epoch: int | None = None


EdgeAction = (
    Subscribe | BirthsRequired | WriteRequested | CommandRejected | Publish | Disconnect | Problem
)


def _next_bd_seq(value: int | None) -> int:
    return 0 if value is None or value < 0 else (value + 1) % 256


class EdgeNodeSession:
    """One edge node's Sparkplug session state. Not thread-safe: drive it from one task."""

    def __init__(
        self,
        group_id: str,
        edge_node_id: str,
        *,
        bd_seq: int | None,
        primary_host_id: str | None = None,
        use_aliases: bool = True,
        data_qos: int = 1,
        death_qos: int = 1,
    ) -> None:
        self.group_id = group_id
        self.edge_node_id = edge_node_id
        #: The bdSeq of the latest Will (``next_will``); -1 before the first one. Persist it.
        self.bd_seq: int = -1 if bd_seq is None else bd_seq
        self.primary_host_id = primary_host_id
        self.use_aliases = use_aliases
        # Andon deliberately publishes NDATA/DDATA at QoS 1 (the spec says 0): the edge spool
        # may drop a record only after the broker's PUBACK, or data would be lost silently.
        self.data_qos = data_qos
        # An explicit NDEATH at QoS 1 like the Will; a duplicate is harmless (the host ignores
        # deaths whose bdSeq no longer matches).
        self.death_qos = death_qos
        #: Highest fence epoch accepted so far; the caller restores it from persistence.
        self.highest_fence_epoch: int | None = None
        self._ndeath_topic = node_topic(group_id, MessageType.NDEATH, edge_node_id)
        self._connected = False
        self._node_born = False
        self._births_announced = False
        #: Timestamp of the offline STATE we last disconnected over (E-06), so that the same
        #: retained STATE seen again after the reconnect does not send us away again.
        self._walked_away_from: int | None = None
        self._seq = 0
        self._host_online = False
        self._last_state_ts: int | None = None
        self._last_online_ts: int | None = None
        # Aliases stay stable for the life of this object; new metrics get fresh numbers.
        self._aliases: dict[tuple[str | None, str], int] = {}
        self._next_alias = 0
        # Per born device (None = the node itself): metric name -> (alias, datatype).
        self._born: dict[str | None, dict[str, tuple[int, DataType]]] = {}
        self._by_alias: dict[int, tuple[str | None, str]] = {}

    # -- state --------------------------------------------------------------------------------

    @property
    def is_born(self) -> bool:
        """True once births were published in this MQTT session and no rebirth is pending."""
        return self._node_born

    @property
    def primary_host_online(self) -> bool:
        return self._host_online

    @property
    def born_devices(self) -> tuple[str, ...]:
        return tuple(d for d in self._born if d is not None)

    def _take_seq(self) -> int:
        seq = self._seq
        self._seq = (seq + 1) % 256
        return seq

    def _death_payload(self, now_ms: int) -> bytes:
        bd = Metric(BDSEQ_METRIC, self.bd_seq, DataType.INT64, timestamp=now_ms)
        return encode_payload(Payload(timestamp=now_ms, metrics=(bd,)))

    # -- connection ---------------------------------------------------------------------------

    def next_will(self, now_ms: int) -> WillMessage:
        """The NDEATH Will for the coming CONNECT; increments ``bd_seq`` (255 wraps to 0)."""
        self.bd_seq = _next_bd_seq(self.bd_seq)
        return WillMessage(self._ndeath_topic, self._death_payload(now_ms), qos=1, retain=False)

    def on_connected(self, now_ms: int) -> list[EdgeAction]:
        """CONNACK received: subscribe (QoS 1), then births at once unless a primary host is set."""
        del now_ms  # part of the uniform event signature; nothing here depends on time
        if self.bd_seq < 0:
            raise SessionError("next_will() must be called before every CONNECT")
        self._connected = True
        self._node_born = False
        self._births_announced = False
        self._host_online = False
        ncmd = node_topic(self.group_id, MessageType.NCMD, self.edge_node_id)
        dcmd_all_devices = f"{NAMESPACE}/{self.group_id}/DCMD/{self.edge_node_id}/+"
        filters = [(ncmd, 1), (dcmd_all_devices, 1)]
        if self.primary_host_id is not None:
            filters.append((state_topic(self.primary_host_id), 1))
            return [Subscribe(tuple(filters))]
        return [Subscribe(tuple(filters)), self._announce_births()]

    def on_disconnected(self) -> None:
        """The MQTT session ended: births are needed again on the next connection."""
        self._connected = False
        self._node_born = False
        self._births_announced = False
        self._host_online = False
        self._seq = 0

    def _announce_births(self) -> BirthsRequired:
        self._node_born = False
        self._births_announced = True
        return BirthsRequired()

    # -- births, data, deaths -----------------------------------------------------------------

    def _alias_for(self, device_id: str | None, name: str) -> int:
        key = (device_id, name)
        alias = self._aliases.get(key)
        if alias is None:
            alias = self._next_alias
            self._next_alias += 1
            self._aliases[key] = alias
            self._by_alias[alias] = key
        return alias

    def _birth_metrics(
        self, device_id: str | None, metrics: Sequence[Metric], now_ms: int
    ) -> list[Metric]:
        table: dict[str, tuple[int, DataType]] = {}
        out: list[Metric] = []
        for metric in metrics:
            name = metric.name
            if not name or metric.datatype is None:
                raise SessionError(f"birth metric {metric!r} needs a name and a datatype")
            if name in _RESERVED or name in table:
                raise SessionError(f"birth metric name {name!r} is reserved or repeated")
            alias = self._alias_for(device_id, name)
            table[name] = (alias, metric.datatype)
            out.append(
                Metric(
                    name,
                    metric.value,
                    metric.datatype,
                    timestamp=metric.timestamp if metric.timestamp is not None else now_ms,
                    alias=alias if self.use_aliases else None,
                    is_historical=metric.is_historical,
                    is_transient=metric.is_transient,
                    properties=metric.properties,
                )
            )
        self._born[device_id] = table
        return out

    def births(
        self,
        node_metrics: Sequence[Metric],
        devices: Mapping[str, Sequence[Metric]],
        now_ms: int,
    ) -> list[Publish]:
        """NBIRTH (seq 0, bdSeq, Node Control/Rebirth=false) then one DBIRTH per device.

        Every metric needs name, datatype and value (None = null); a missing timestamp becomes
        ``now_ms``. Births are QoS 0, not retained (spec). Restarts seq at 0.
        """
        if not self._connected:
            raise SessionError("births() needs a connected session")
        if self.primary_host_id is not None and not self._host_online:
            raise SessionError(f"primary host {self.primary_host_id!r} is not online")
        self._born.clear()
        self._seq = 0
        control = [
            Metric(BDSEQ_METRIC, self.bd_seq, DataType.INT64, timestamp=now_ms),
            Metric(REBIRTH_METRIC, False, DataType.BOOLEAN, timestamp=now_ms),
        ]
        metrics = control + self._birth_metrics(None, node_metrics, now_ms)
        topic = node_topic(self.group_id, MessageType.NBIRTH, self.edge_node_id)
        payload = Payload(timestamp=now_ms, metrics=tuple(metrics), seq=self._take_seq())
        publishes = [Publish(topic, encode_payload(payload))]
        for device_id, device_metrics in devices.items():
            publishes.append(self._device_birth(device_id, device_metrics, now_ms))
        self._node_born = True
        self._births_announced = False
        return publishes

    def _device_birth(self, device_id: str, metrics: Sequence[Metric], now_ms: int) -> Publish:
        topic = device_topic(self.group_id, MessageType.DBIRTH, self.edge_node_id, device_id)
        born = self._birth_metrics(device_id, metrics, now_ms)
        payload = Payload(timestamp=now_ms, metrics=tuple(born), seq=self._take_seq())
        return Publish(topic, encode_payload(payload))

    def device_birth(self, device_id: str, metrics: Sequence[Metric], now_ms: int) -> Publish:
        """DBIRTH for a device that appeared (or came back) after the node's births."""
        if not self._node_born:
            raise SessionError("device_birth() before the node's births")
        return self._device_birth(device_id, metrics, now_ms)

    def device_death(self, device_id: str, now_ms: int) -> Publish:
        """DDEATH (with seq) for a lost device; it needs ``device_birth`` before more data."""
        if not self._node_born or device_id not in self._born:
            raise SessionError(f"device {device_id!r} is not born")
        del self._born[device_id]
        topic = device_topic(self.group_id, MessageType.DDEATH, self.edge_node_id, device_id)
        payload = Payload(timestamp=now_ms, seq=self._take_seq())
        return Publish(topic, encode_payload(payload))

    def data(
        self,
        device_id: str | None,
        metrics: Sequence[Metric],
        now_ms: int,
        *,
        historical: bool = False,
    ) -> Publish:
        """NDATA (``device_id`` None) or DDATA with the next seq, at ``data_qos``.

        Metrics are looked up by name in the birth; with aliases on only the alias is sent.
        ``historical`` marks every metric ``is_historical`` (store-and-forward backlog).
        """
        out = self._resolve(device_id, metrics, now_ms, historical)
        payload = Payload(timestamp=now_ms, metrics=tuple(out), seq=self._take_seq())
        body = encode_payload(payload, omit_datatypes=True)
        return Publish(self._data_topic(device_id), body, qos=self.data_qos)

    def data_columns(
        self,
        device_id: str | None,
        names: Sequence[str],
        values: Sequence[MetricValue],
        timestamps: Sequence[int],
        now_ms: int,
        *,
        properties: Mapping[int, Mapping[str, PropertyValue]] | None = None,
        historical: bool = False,
    ) -> Publish:
        """``data()`` of metrics given as columns, without a ``Metric`` per value.

        The same message, byte for byte and with the same errors, as ``data(device_id,
        [Metric(names[i], values[i], timestamp=timestamps[i], properties=properties.get(i))
        ...], now_ms, historical=historical)``: the store-and-forward flush's fast path.
        """
        table = self._birth_table(device_id)
        try:
            entries = [table[name] for name in names]
        except KeyError as exc:
            raise SessionError(
                f"metric {exc.args[0]!r} is not in the birth of {device_id!r}"
            ) from None
        body = encode_data_columns(
            now_ms,
            self._take_seq(),
            [entry[0] for entry in entries] if self.use_aliases else names,
            [entry[1] for entry in entries],
            values,
            timestamps,
            by_alias=self.use_aliases,
            properties=properties or {},
            historical=historical,
        )
        return Publish(self._data_topic(device_id), body, qos=self.data_qos)

    def _data_topic(self, device_id: str | None) -> str:
        if device_id is None:
            return node_topic(self.group_id, MessageType.NDATA, self.edge_node_id)
        return device_topic(self.group_id, MessageType.DDATA, self.edge_node_id, device_id)

    def _birth_table(self, device_id: str | None) -> dict[str, tuple[int, DataType]]:
        """The born metrics of ``device_id``; SessionError when data may not be sent for it."""
        if not self._node_born:
            raise SessionError("data() before births (or while a rebirth is pending)")
        table = self._born.get(device_id)
        if table is None:
            raise SessionError(f"device {device_id!r} has no birth in this session")
        return table

    def check_data(self, device_id: str | None, metrics: Sequence[Metric]) -> None:
        """Raise ``SessionError`` if ``data()`` would refuse these metrics; consumes no seq."""
        self._resolve(device_id, metrics, 0, historical=False)

    def _resolve(
        self, device_id: str | None, metrics: Sequence[Metric], now_ms: int, historical: bool
    ) -> list[Metric]:
        table = self._birth_table(device_id)
        out: list[Metric] = []
        use_aliases = self.use_aliases
        for metric in metrics:
            entry = table.get(metric.name) if metric.name is not None else None
            if entry is None:
                raise SessionError(f"metric {metric.name!r} is not in the birth of {device_id!r}")
            alias, datatype = entry
            out.append(
                Metric(
                    None if use_aliases else metric.name,
                    metric.value,
                    datatype,  # decides the wire field; omitted on the wire below
                    timestamp=metric.timestamp if metric.timestamp is not None else now_ms,
                    alias=alias if use_aliases else None,
                    is_historical=historical or metric.is_historical,
                    is_transient=metric.is_transient,
                    properties=metric.properties,
                )
            )
        return out

    def death(self, now_ms: int) -> Publish:
        """NDEATH (current bdSeq, no seq) to publish before an intentional DISCONNECT."""
        self._node_born = False
        return Publish(self._ndeath_topic, self._death_payload(now_ms), qos=self.death_qos)

    # -- incoming -----------------------------------------------------------------------------

    def on_message(self, topic: str, payload: bytes, now_ms: int) -> list[EdgeAction]:
        """React to NCMD/DCMD/STATE. Bad input becomes a ``Problem``, never an exception."""
        try:
            parsed = parse_topic(topic)
        except TopicError as exc:
            return [Problem("bad_topic", self.group_id, self.edge_node_id, str(exc))]
        kind = parsed.message_type
        if kind is MessageType.STATE:
            if parsed.host_id != self.primary_host_id:
                return []
            return self._on_state(payload, now_ms)
        if (
            kind not in (MessageType.NCMD, MessageType.DCMD)
            or parsed.group_id != self.group_id
            or parsed.edge_node_id != self.edge_node_id
        ):
            return []
        try:
            decoded = decode_payload(payload)
        except PayloadError as exc:
            return [Problem("malformed_payload", self.group_id, self.edge_node_id, str(exc))]
        return self._on_command(parsed.device_id, decoded)

    def _on_state(self, payload: bytes, now_ms: int) -> list[EdgeAction]:
        del now_ms
        try:
            state = decode_state(payload)
        except PayloadError as exc:
            return [Problem("malformed_state", self.group_id, self.edge_node_id, str(exc))]
        if state.online:
            if self._last_state_ts is not None and state.timestamp < self._last_state_ts:
                return []  # an older session's birth: ignore
            previous_online = self._last_online_ts
            self._last_state_ts = state.timestamp
            self._last_online_ts = state.timestamp
            self._host_online = True
            if self._connected and not self._node_born and not self._births_announced:
                return [self._announce_births()]
            if (
                self._connected
                and self._node_born
                and previous_online is not None
                and state.timestamp > previous_online
            ):
                # The host began a new session after our births. It may have missed what we
                # sent meanwhile: a restarted broker restores the host's retained online STATE
                # before the host itself is back. Birth again (the publisher re-sends history).
                return [self._announce_births()]
            return []
        if self._last_online_ts is None or state.timestamp < self._last_online_ts:
            # A stale Will of an older host session (or host offline before we saw it online).
            if self._last_state_ts is None or state.timestamp > self._last_state_ts:
                self._last_state_ts = state.timestamp
            return []
        self._last_state_ts = state.timestamp
        self._host_online = False
        if self._walked_away_from is not None and state.timestamp <= self._walked_away_from:
            # We already left a server over this very STATE; it is retained, so every server
            # shows it on connect. Leaving again would loop: wait here for the host instead.
            return []
        if not self._connected:
            return []
        self._walked_away_from = state.timestamp
        death = self.death(state.timestamp)
        self._connected = False
        return [death, Disconnect("primary host offline", next_server=True)]

    def _resolve_command_metric(self, device_id: str | None, metric: Metric) -> Metric:
        table = self._born.get(device_id, {})
        name = metric.name
        if name is None and metric.alias is not None:
            owner = self._by_alias.get(metric.alias)
            if owner is not None and owner[0] == device_id:
                name = owner[1]
        entry = table.get(name) if name is not None else None
        if name is None or entry is None:
            raise PayloadError(f"unknown metric {metric.name or metric.alias!r}")
        datatype = entry[1]
        if metric.datatype is not None and metric.datatype != datatype:
            raise PayloadError(f"metric {name!r} is {datatype.name}, not {metric.datatype.name}")
        value = resolve_value(datatype, metric.value)
        return Metric(
            name, value, datatype, timestamp=metric.timestamp, properties=metric.properties
        )

    def _on_command(self, device_id: str | None, payload: Payload) -> list[EdgeAction]:
        if device_id is None and any(
            m.name == REBIRTH_METRIC and m.value is True for m in payload.metrics
        ):
            # Same bdSeq (no new Will), seq restarts at 0 in births().
            return [self._announce_births()]
        epoch: int | None = None
        writes: list[Metric] = []
        for metric in payload.metrics:
            if metric.name == FENCE_EPOCH_METRIC:
                try:
                    raw = resolve_value(DataType.INT64, metric.value)
                except PayloadError as exc:
                    return [CommandRejected(device_id, f"bad {FENCE_EPOCH_METRIC}: {exc}")]
                epoch = raw if isinstance(raw, int) else None
            elif metric.name not in _RESERVED:
                writes.append(metric)
        if (
            epoch is not None
            and self.highest_fence_epoch is not None
            and (epoch < self.highest_fence_epoch)
        ):
            reason = f"fence epoch {epoch} is below the highest seen {self.highest_fence_epoch}"
            return [CommandRejected(device_id, reason, epoch)]
        if device_id is not None and device_id not in self._born:
            return [CommandRejected(device_id, f"device {device_id!r} is not born", epoch)]
        try:
            resolved = tuple(self._resolve_command_metric(device_id, m) for m in writes)
        except PayloadError as exc:
            return [CommandRejected(device_id, str(exc), epoch)]
        if epoch is not None:
            self.highest_fence_epoch = max(epoch, self.highest_fence_epoch or epoch)
        if not resolved:
            return []
        return [WriteRequested(device_id, resolved, epoch)]
