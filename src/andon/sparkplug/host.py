"""Host-application session rules (SPARKPLUG.md §4-§8, §10; checklist A), IO-free.

The caller (the server's MQTT adapter) drives it:

1. ``will = session.connect(now_ms)`` before every CONNECT (STATE offline, T = now, retained).
2. After CONNACK: subscribe ``session.subscriptions()`` and wait for both SUBACKs, then publish
   ``session.birth()`` (STATE online with the same T).
3. Every received message: ``session.on_message(topic, payload, receive_ms)`` -> actions.
   Never raises on bad input: it becomes a ``Problem`` (counted per edge node).
4. Call ``session.on_timer(now_ms)`` at ``session.next_deadline_ms()`` (or periodically): it
   requests a rebirth for every edge node whose seq gap is still open after the reorder timeout.
5. Clean shutdown: publish ``session.shutdown(now_ms)``, then DISCONNECT.

Out-of-order data: messages behind a seq gap are applied anyway (the historian is idempotent on
(tag, timestamp) and every value carries its own timestamp; the live table must keep the newest
timestamp), while the gap is tracked; a late message that fills the gap cancels the timer. A
device's DDATA that fills a gap its own DDEATH opened (a QoS 0 death overtaking QoS 1 data) is
kept, as history: it was sent while the device was alive.
After a rebirth request the node is marked offline/stale at once and its data is ignored
(``before_birth``) until the new NBIRTH, as the reference implementations do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from andon.sparkplug.actions import Disconnect, Problem, Publish, WillMessage
from andon.sparkplug.codec import (
    decode_message,
    decode_state,
    encode_payload,
    encode_state,
    parse_payload,
)
from andon.sparkplug.edge_node import (
    BDSEQ_METRIC,
    FENCE_EPOCH_METRIC,
    READ_ONLY_PROPERTY,
    REBIRTH_METRIC,
)
from andon.sparkplug.errors import PayloadError, SessionError, TopicError
from andon.sparkplug.host_actions import (
    CommandTarget,
    DeviceOffline,
    DeviceOnline,
    EdgeNodeStats,
    HostAction,
    MetricsReceived,
    MetricsStale,
    NodeOffline,
    NodeOnline,
    ReceivedMetric,
)
from andon.sparkplug.host_edge import (
    EdgeNodeState,
    UnknownAlias,
    metrics_from_birth,
    metrics_from_data,
    resolve_data_message,
)
from andon.sparkplug.model import DataType, Metric, Payload
from andon.sparkplug.topic import (
    NAMESPACE,
    MessageType,
    device_topic,
    node_topic,
    parse_topic,
    state_topic,
)

# The action types are re-exported so adapters can import everything host-side from here.
__all__ = [
    "CommandTarget",
    "DeviceOffline",
    "DeviceOnline",
    "EdgeNodeStats",
    "HostAction",
    "HostApplicationSession",
    "MetricsReceived",
    "MetricsStale",
    "NodeOffline",
    "NodeOnline",
    "ReceivedMetric",
]

_SEQUENCED = frozenset(
    {MessageType.DBIRTH, MessageType.NDATA, MessageType.DDATA, MessageType.DDEATH}
)


class HostApplicationSession:
    """One Sparkplug host application's view of all edge nodes. Drive it from one task."""

    def __init__(
        self,
        host_id: str,
        *,
        rebirth_debounce_ms: int = 5000,
        reorder_timeout_ms: int = 2000,
        rebirth_on_gap: bool = True,
        rebirth_on_unknown: bool = True,
        rebirth_on_malformed: bool = True,
        rebirth_on_before_birth: bool = True,
        historical_updates_live: bool = False,
        state_v4_mode: bool = False,
        namespace_filter: str = f"{NAMESPACE}/#",
        rebirth_allowed: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.host_id = host_id
        #: (group, edge node) -> may this host command that node now. A passive cluster node
        #: (checklist R-14) never sends NCMD; it keeps applying the node's data meanwhile.
        self.rebirth_allowed = rebirth_allowed
        #: What the host subscribes to: all of Sparkplug, or e.g. ``spBv1.0/Plant1/#``.
        self.namespace_filter = namespace_filter
        #: H-05: seeing our own STATE declared offline, 3.0 republishes the birth with the same
        #: T; the v4 direction instead reconnects, which brings a new T.
        self.state_v4_mode = state_v4_mode
        self.state_topic = state_topic(host_id)
        self.rebirth_debounce_ms = rebirth_debounce_ms
        self.reorder_timeout_ms = reorder_timeout_ms
        self.rebirth_on_gap = rebirth_on_gap
        self.rebirth_on_unknown = rebirth_on_unknown
        self.rebirth_on_malformed = rebirth_on_malformed
        self.rebirth_on_before_birth = rebirth_on_before_birth
        #: Policy for the adapter (H-19): whether is_historical values may update live values.
        self.historical_updates_live = historical_updates_live
        #: The STATE timestamp T of the current MQTT session (None before ``connect``).
        self.session_timestamp: int | None = None
        self._nodes: dict[tuple[str, str], EdgeNodeState] = {}

    # -- own STATE ----------------------------------------------------------------------------

    def connect(self, now_ms: int) -> WillMessage:
        """The Will for the coming CONNECT: STATE offline with T = ``now_ms``, QoS 1, retained."""
        self.session_timestamp = now_ms
        # A new (clean) session: what each edge node sent while we were away is unknown, so
        # none counts as born any more; its next data asks for a rebirth (H-15), whose births
        # re-send the edge's rolling buffer.
        for node in self._nodes.values():
            node.born = False
            node.clear_gap()
        return WillMessage(self.state_topic, encode_state(False, now_ms), qos=1, retain=True)

    def subscriptions(self) -> tuple[tuple[str, int], ...]:
        return ((self.state_topic, 1), (self.namespace_filter, 1))

    def birth(self) -> Publish:
        """STATE online with the same T as the Will; publish after both SUBACKs."""
        if self.session_timestamp is None:
            raise SessionError("birth() before connect()")
        return Publish(self.state_topic, encode_state(True, self.session_timestamp), 1, True)

    def shutdown(self, now_ms: int) -> Publish:
        """STATE offline with the current time, to publish before DISCONNECT.

        Ends the session: our own offline STATE, echoed back by the broker, must not be taken
        for another client declaring us offline (which would republish the birth, H-05, and
        leave a stopped host retained as online).
        """
        self.session_timestamp = None
        return Publish(self.state_topic, encode_state(False, now_ms), qos=1, retain=True)

    # -- views --------------------------------------------------------------------------------

    def edge_nodes(self) -> list[EdgeNodeStats]:
        return [node.stats() for node in self._nodes.values()]

    def next_deadline_ms(self) -> int | None:
        """When ``on_timer`` next has work to do (earliest open reorder deadline), else None."""
        deadlines = [n.gap_deadline_ms for n in self._nodes.values() if n.gap_deadline_ms]
        return min(deadlines) if deadlines else None

    # -- commands -----------------------------------------------------------------------------

    def command_target(
        self, group_id: str, edge_node_id: str, device_id: str | None, name: str
    ) -> CommandTarget | None:
        """What the latest births say about metric ``name`` (None: no birth declared it).

        Answers for a node or device that is offline now too (its last birth is kept), so a
        caller can tell "offline" from "unknown".
        """
        node = self._nodes.get((group_id, edge_node_id))
        table = node.metrics.get(device_id) if node is not None else None
        if node is None or table is None or name not in table:
            return None
        return CommandTarget(
            datatype=table[name],
            read_only=name in node.read_only.get(device_id, ()),
            node_online=node.online and node.born,
            device_online=device_id is None or device_id in node.devices_online,
        )

    def command(
        self,
        group_id: str,
        edge_node_id: str,
        device_id: str | None,
        metrics: Sequence[Metric],
        now_ms: int,
        *,
        fence_epoch: int | None = None,
    ) -> Publish:
        """NCMD/DCMD by metric name, QoS 0, no seq, payload timestamp.

        Every metric must be in the target's birth; its datatype comes from the birth (a
        conflicting ``Metric.datatype`` raises SessionError, a bad value PayloadError). The
        datatype is written (Tahu-based edges need it to decode commands). ``fence_epoch``
        adds the Andon ``Andon/FenceEpoch`` Int64 metric.
        """
        node = self._nodes.get((group_id, edge_node_id))
        born = node.metrics.get(device_id) if node is not None and node.born else None
        if born is None:
            raise SessionError(f"{group_id}/{edge_node_id}/{device_id} has no current birth")
        out: list[Metric] = []
        for metric in metrics:
            datatype = born.get(metric.name) if metric.name is not None else None
            if datatype is None:
                raise SessionError(f"metric {metric.name!r} is not in the birth")
            if metric.datatype is not None and metric.datatype != datatype:
                raise SessionError(f"metric {metric.name!r} is {datatype.name}")
            out.append(Metric(metric.name, metric.value, datatype, timestamp=metric.timestamp))
        if fence_epoch is not None:
            out.append(Metric(FENCE_EPOCH_METRIC, fence_epoch, DataType.INT64))
        return self._command(group_id, edge_node_id, device_id, out, now_ms)

    def _command(
        self, group_id: str, node_id: str, device_id: str | None, metrics: list[Metric], now: int
    ) -> Publish:
        if device_id is None:
            topic = node_topic(group_id, MessageType.NCMD, node_id)
        else:
            topic = device_topic(group_id, MessageType.DCMD, node_id, device_id)
        payload = encode_payload(Payload(timestamp=now, metrics=tuple(metrics)))
        return Publish(topic, payload, qos=0, retain=False)

    def _request_rebirth(self, node: EdgeNodeState, now_ms: int, reason: str) -> list[HostAction]:
        """Rebirth NCMD (debounced per node); marks the node offline/stale right away."""
        last = node.last_rebirth_request_ms
        if last is not None and now_ms - last < self.rebirth_debounce_ms:
            return []
        node.last_rebirth_request_ms = now_ms
        if self.rebirth_allowed is not None and not self.rebirth_allowed(
            node.group_id, node.edge_node_id
        ):
            detail = (
                f"{reason}; no rebirth requested now: another host commands this edge node, "
                "or the host's rebirth rate is reached"
            )
            return [Problem("rebirth_not_requested", node.group_id, node.edge_node_id, detail)]
        node.rebirth_requests += 1
        rebirth = Metric(REBIRTH_METRIC, True, DataType.BOOLEAN, timestamp=now_ms)
        actions: list[HostAction] = [
            Problem("rebirth_requested", node.group_id, node.edge_node_id, reason),
            self._command(node.group_id, node.edge_node_id, None, [rebirth], now_ms),
        ]
        actions.extend(node.go_offline(now_ms))
        return actions

    # -- timers -------------------------------------------------------------------------------

    def on_timer(self, now_ms: int) -> list[HostAction]:
        """Request rebirths for seq gaps still open after ``reorder_timeout_ms``."""
        actions: list[HostAction] = []
        for node in self._nodes.values():
            if node.gap_deadline_ms is not None and now_ms >= node.gap_deadline_ms:
                missing = sorted(node.missing_seqs)
                node.clear_gap()
                detail = f"seq {missing} not received within {self.reorder_timeout_ms} ms"
                actions.append(Problem("seq_gap", node.group_id, node.edge_node_id, detail))
                if self.rebirth_on_gap:
                    actions.extend(self._request_rebirth(node, now_ms, detail))
        return actions

    # -- incoming -----------------------------------------------------------------------------

    def on_message(self, topic: str, payload: bytes, receive_ms: int) -> list[HostAction]:
        try:
            parsed = parse_topic(topic)
        except TopicError as exc:
            return [Problem("bad_topic", None, None, str(exc))]
        kind = parsed.message_type
        if kind is MessageType.STATE:
            return self._on_state(parsed.host_id, payload)
        if kind in (MessageType.NCMD, MessageType.DCMD):
            return []  # commands of other hosts (or our own echo)
        group_id, node_id = parsed.group_id or "", parsed.edge_node_id or ""
        node = self._nodes.get((group_id, node_id))
        if node is None:
            node = self._nodes[(group_id, node_id)] = EdgeNodeState(group_id, node_id)
        node.last_seen_ms = receive_ms
        try:
            message = parse_payload(payload)
            if (
                (kind is MessageType.DDATA or kind is MessageType.NDATA)
                and node.born
                and (parsed.device_id is None or parsed.device_id in node.devices_online)
            ):
                # The fast path for the bulk of the traffic: resolve from the message itself.
                resolved = resolve_data_message(node, parsed.device_id, message, receive_ms)
                seq = message.seq if message.seq or message.HasField("seq") else None
                actions = self._check_seq(node, seq, receive_ms)
                return actions + self._data_result(
                    node, kind, parsed.device_id, resolved, receive_ms
                )
            decoded = decode_message(message)
        except PayloadError as exc:
            return self._malformed(node, kind, receive_ms, str(exc))
        if kind is MessageType.NBIRTH:
            return self._on_nbirth(node, decoded, receive_ms)
        if kind is MessageType.NDEATH:
            return self._on_ndeath(node, decoded, receive_ms)
        if not node.born:
            node.before_birth += 1
            detail = f"{kind.value} before NBIRTH"
            actions = [Problem("before_birth", group_id, node_id, detail)]
            if self.rebirth_on_before_birth:
                actions.extend(self._request_rebirth(node, receive_ms, detail))
            return actions
        late = decoded.seq in node.missing_seqs  # fills a gap: sent before what overtook it
        actions = self._check_seq(node, decoded.seq, receive_ms)
        if kind is MessageType.DBIRTH:
            return actions + self._on_dbirth(node, parsed.device_id, decoded, receive_ms)
        if kind is MessageType.DDEATH:
            return actions + self._on_ddeath(node, parsed.device_id, decoded, receive_ms)
        return actions + self._on_data(node, kind, parsed.device_id, decoded, receive_ms, late)

    def _on_state(self, host_id: str | None, payload: bytes) -> list[HostAction]:
        if host_id != self.host_id or self.session_timestamp is None:
            return []
        try:
            state = decode_state(payload)
        except PayloadError as exc:
            return [Problem("malformed_payload", None, None, f"own STATE: {exc}")]
        if state.online or state.timestamp < self.session_timestamp:
            return []  # our own birth, or the retained Will of an earlier session
        # Someone declared us offline while we are connected: 3.0 mode republishes the birth.
        if self.state_v4_mode:
            return [Disconnect("own STATE declared offline (v4 mode): reconnect with a new T")]
        return [self.birth()]

    def _malformed(
        self, node: EdgeNodeState, kind: MessageType, receive_ms: int, detail: str
    ) -> list[HostAction]:
        node.malformed += 1
        actions: list[HostAction] = [
            Problem(
                "malformed_payload", node.group_id, node.edge_node_id, f"{kind.value}: {detail}"
            )
        ]
        if self.rebirth_on_malformed and kind is not MessageType.NDEATH:
            actions.extend(self._request_rebirth(node, receive_ms, f"malformed {kind.value}"))
        return actions

    def _check_seq(self, node: EdgeNodeState, seq: int | None, receive_ms: int) -> list[HostAction]:
        if seq is None or not 0 <= seq <= 255:
            node.malformed += 1
            detail = f"missing or invalid seq {seq!r}"
            return [Problem("malformed_payload", node.group_id, node.edge_node_id, detail)]
        expected = node.expected_seq
        if expected is None or seq == expected:
            node.expected_seq = (seq + 1) % 256
            return []
        ahead = (seq - expected) % 256
        if ahead < 128:  # messages expected..seq-1 are missing (so far)
            node.seq_gaps += 1
            node.missing_seqs.update((expected + i) % 256 for i in range(ahead))
            node.expected_seq = (seq + 1) % 256
            if node.gap_deadline_ms is None:
                node.gap_deadline_ms = receive_ms + self.reorder_timeout_ms
            detail = f"expected seq {expected}, got {seq}; waiting for the missing ones"
            return [Problem("seq_gap", node.group_id, node.edge_node_id, detail)]
        if seq in node.missing_seqs:  # a late message fills the gap
            node.missing_seqs.discard(seq)
            if not node.missing_seqs:
                node.clear_gap()
            return []
        detail = f"seq {seq} is behind the expected {expected} (duplicate?)"
        return [Problem("seq_duplicate", node.group_id, node.edge_node_id, detail)]

    def _on_nbirth(
        self, node: EdgeNodeState, payload: Payload, receive_ms: int
    ) -> list[HostAction]:
        bd_seq = next((m.value for m in payload.metrics if m.name == BDSEQ_METRIC), None)
        seq = payload.seq
        if type(bd_seq) is not int or seq is None or not 0 <= seq <= 255:
            detail = f"needs a bdSeq metric and a seq 0-255 (bdSeq={bd_seq!r}, seq={seq!r})"
            return self._malformed(node, MessageType.NBIRTH, receive_ms, detail)
        actions: list[HostAction] = list(node.devices_offline(receive_ms))
        try:
            table, received = metrics_from_birth(node, None, payload, receive_ms)
        except PayloadError as exc:
            return actions + self._malformed(node, MessageType.NBIRTH, receive_ms, str(exc))
        node.start_session(bd_seq, seq, table, receive_ms)
        received = tuple(m for m in received if m.name != BDSEQ_METRIC)
        actions.append(NodeOnline(node.group_id, node.edge_node_id, receive_ms, bd_seq, len(table)))
        actions.append(
            MetricsReceived(
                node.group_id, node.edge_node_id, None, MessageType.NBIRTH, received, receive_ms
            )
        )
        return actions

    def _on_ndeath(
        self, node: EdgeNodeState, payload: Payload, receive_ms: int
    ) -> list[HostAction]:
        bd_seq = next((m.value for m in payload.metrics if m.name == BDSEQ_METRIC), None)
        if bd_seq == node.bd_seq and not node.online:
            return []  # already offline (e.g. marked so by our own rebirth request)
        if bd_seq != node.bd_seq:
            detail = f"NDEATH bdSeq {bd_seq!r} does not match the birth's {node.bd_seq!r}"
            return [Problem("stale_death", node.group_id, node.edge_node_id, detail)]
        # The Will may arrive long after the death: use our own receive time (§5).
        return node.go_offline(receive_ms)

    def _on_dbirth(
        self, node: EdgeNodeState, device_id: str | None, payload: Payload, receive_ms: int
    ) -> list[HostAction]:
        assert device_id is not None  # guaranteed by parse_topic for device message types
        actions: list[HostAction] = list(node.device_offline(device_id, receive_ms))
        try:
            table, received = metrics_from_birth(node, device_id, payload, receive_ms)
        except PayloadError as exc:
            return actions + self._malformed(node, MessageType.DBIRTH, receive_ms, str(exc))
        node.metrics[device_id] = table
        node.read_only[device_id] = frozenset(
            m.name
            for m in payload.metrics
            if m.name and m.properties.get(READ_ONLY_PROPERTY) is True
        )
        node.devices_online.add(device_id)
        actions.append(
            DeviceOnline(node.group_id, node.edge_node_id, device_id, receive_ms, len(table))
        )
        actions.append(
            MetricsReceived(
                node.group_id,
                node.edge_node_id,
                device_id,
                MessageType.DBIRTH,
                received,
                receive_ms,
            )
        )
        return actions

    def _on_ddeath(
        self, node: EdgeNodeState, device_id: str | None, payload: Payload, receive_ms: int
    ) -> list[HostAction]:
        assert device_id is not None
        if device_id not in node.devices_online:
            return []
        at_ms = payload.timestamp if payload.timestamp is not None else receive_ms
        return node.device_offline(device_id, at_ms)

    def _on_data(
        self,
        node: EdgeNodeState,
        kind: MessageType,
        device_id: str | None,
        payload: Payload,
        receive_ms: int,
        late: bool = False,
    ) -> list[HostAction]:
        # A DDATA that fills a seq gap for a device whose DDEATH, sent after it, came first:
        # MQTT keeps order only per topic and QoS, births and deaths go at QoS 0 and Andon's
        # data at QoS 1, and a broker may deliver a QoS 0 message ahead of the QoS 1 ones sent
        # before it (embedded NATS does, measured: 3,000 mixed messages, every QoS 0 one first).
        # They were the device's last values under its birth: kept, flagged historical, with no
        # rebirth; under the default policy (historical values do not update live ones, H-19)
        # the dead device's tags stay stale in the live view.
        offline = device_id is not None and device_id not in node.devices_online
        if offline and not (late and device_id in node.metrics):
            node.before_birth += 1
            detail = f"DDATA for device {device_id!r} without a DBIRTH"
            actions: list[HostAction] = [
                Problem("before_birth", node.group_id, node.edge_node_id, detail)
            ]
            if self.rebirth_on_before_birth:
                actions.extend(self._request_rebirth(node, receive_ms, detail))
            return actions
        resolved: tuple[ReceivedMetric, ...] | LookupError | PayloadError
        try:
            resolved = metrics_from_data(node, device_id, payload, receive_ms)
            if offline:
                resolved = tuple(m._replace(is_historical=True) for m in resolved)
        except (LookupError, PayloadError) as exc:
            resolved = exc
        return self._data_result(node, kind, device_id, resolved, receive_ms)

    def _data_result(
        self,
        node: EdgeNodeState,
        kind: MessageType,
        device_id: str | None,
        resolved: tuple[ReceivedMetric, ...] | LookupError | PayloadError,
        receive_ms: int,
    ) -> list[HostAction]:
        """The actions for resolved data metrics, or for the failure that rejects them all."""
        if isinstance(resolved, tuple):
            return [
                MetricsReceived(
                    node.group_id, node.edge_node_id, device_id, kind, resolved, receive_ms
                )
            ]
        if isinstance(resolved, PayloadError):
            return self._malformed(node, kind, receive_ms, str(resolved))
        # UnknownAlias, or UnknownMetric (absent from the birth)
        kind_name = "unknown_alias" if isinstance(resolved, UnknownAlias) else "unknown_metric"
        node.unknown_alias += 1
        detail = resolved.args[0] if resolved.args else kind_name
        actions: list[HostAction] = [Problem(kind_name, node.group_id, node.edge_node_id, detail)]
        if self.rebirth_on_unknown:
            actions.extend(self._request_rebirth(node, receive_ms, detail))
        return actions
