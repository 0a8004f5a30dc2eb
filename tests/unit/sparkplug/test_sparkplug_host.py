"""Host-application session rules, named after checklist A (SPARKPLUG.md).

Edge traffic is produced by the real ``EdgeNodeSession`` so both sides are checked together.
"""

from __future__ import annotations

import pytest

from andon.sparkplug.actions import Disconnect, Problem, Publish
from andon.sparkplug.codec import decode_payload, decode_state, encode_payload, encode_state
from andon.sparkplug.edge_node import EdgeNodeSession
from andon.sparkplug.errors import SessionError
from andon.sparkplug.host import (
    DeviceOffline,
    DeviceOnline,
    HostAction,
    HostApplicationSession,
    MetricsReceived,
    MetricsStale,
    NodeOffline,
    NodeOnline,
)
from andon.sparkplug.model import DataType, Metric, Payload, Quality
from andon.sparkplug.topic import MessageType

NODE_METRICS = [Metric("Temperature", 21.5, DataType.DOUBLE, timestamp=900)]
DEVICES = {
    "press": [Metric("Count", -7, DataType.INT32), Metric("Running", True, DataType.BOOLEAN)]
}


def edge(bd_seq: int | None = None) -> tuple[EdgeNodeSession, list[Publish]]:
    session = EdgeNodeSession("G", "N", bd_seq=bd_seq)
    session.next_will(1000)
    session.on_connected(1000)
    return session, session.births(NODE_METRICS, DEVICES, 1000)


def feed(
    host: HostApplicationSession, publishes: list[Publish], at: int = 1000
) -> list[HostAction]:
    actions: list[HostAction] = []
    for publish in publishes:
        actions.extend(host.on_message(publish.topic, publish.payload, at))
    return actions


def of(kind: type, actions: list[HostAction]) -> list[HostAction]:
    return [a for a in actions if isinstance(a, kind)]


def rebirths(actions: list[HostAction]) -> list[Publish]:
    return [a for a in actions if isinstance(a, Publish) and "/NCMD/" in a.topic]


def problems(actions: list[HostAction]) -> list[str]:
    return [a.kind for a in actions if isinstance(a, Problem)]


def born_host(**kwargs: object) -> tuple[HostApplicationSession, EdgeNodeSession]:
    host = HostApplicationSession("host", **kwargs)  # type: ignore[arg-type]
    node, births = edge()
    feed(host, births)
    return host, node


def test_h02_will_is_offline_state_retained_qos1() -> None:
    host = HostApplicationSession("host")
    will = host.connect(1234)
    assert (will.topic, will.qos, will.retain) == ("spBv1.0/STATE/host", 1, True)
    assert decode_state(will.payload).online is False
    assert decode_state(will.payload).timestamp == 1234
    assert host.subscriptions() == (("spBv1.0/STATE/host", 1), ("spBv1.0/#", 1))


def test_h04_birth_uses_the_same_timestamp_as_the_will() -> None:
    host = HostApplicationSession("host")
    with pytest.raises(SessionError):
        host.birth()
    host.connect(1234)
    birth = host.birth()
    assert (birth.qos, birth.retain) == (1, True)
    assert decode_state(birth.payload).online
    assert decode_state(birth.payload).timestamp == 1234


def test_h05_foreign_offline_state_on_our_id_republishes_birth() -> None:
    host = HostApplicationSession("host")
    host.connect(1234)
    (republish,) = host.on_message("spBv1.0/STATE/host", encode_state(False, 9999), 2000)
    assert republish == host.birth()
    assert host.on_message("spBv1.0/STATE/host", encode_state(True, 1234), 2000) == []
    assert host.on_message("spBv1.0/STATE/other", encode_state(False, 1), 2000) == []


def test_h05_an_offline_state_older_than_our_session_is_ignored() -> None:
    host = HostApplicationSession("host")
    host.connect(5000)
    # The retained Will of an earlier session of ours must not trigger anything.
    assert host.on_message("spBv1.0/STATE/host", encode_state(False, 4000), 6000) == []


def test_subscription_filter_is_configurable() -> None:
    host = HostApplicationSession("host", namespace_filter="spBv1.0/Plant1/#")
    assert host.subscriptions() == (("spBv1.0/STATE/host", 1), ("spBv1.0/Plant1/#", 1))


def test_h05_v4_mode_reconnects_with_a_new_timestamp() -> None:
    host = HostApplicationSession("host", state_v4_mode=True)
    first = decode_state(host.connect(1234).payload).timestamp
    (action,) = host.on_message("spBv1.0/STATE/host", encode_state(False, 9999), 2000)
    assert isinstance(action, Disconnect)
    # The adapter reconnects: the next CONNECT carries a Will with a new T, and so the birth.
    second = decode_state(host.connect(5000).payload).timestamp
    assert (first, second) == (1234, 5000)
    assert decode_state(host.birth().payload).timestamp == 5000


def test_h06_our_own_offline_state_echoed_after_shutdown_is_not_answered() -> None:
    host = HostApplicationSession("host")
    host.connect(1000)
    offline = host.shutdown(2000)
    assert host.on_message(offline.topic, offline.payload, 2001) == []


def test_h06_shutdown_publishes_offline_with_current_time() -> None:
    host = HostApplicationSession("host")
    host.connect(1)
    state = decode_state(host.shutdown(77).payload)
    assert (state.online, state.timestamp) == (False, 77)


def test_h08_h09_rebirth_ncmd_format() -> None:
    host = HostApplicationSession("host")
    node, _ = edge()
    update = node.data(None, [Metric("Temperature", 1.0)], 2000)
    actions = host.on_message(update.topic, update.payload, 2000)  # before any NBIRTH
    (ncmd,) = rebirths(actions)
    assert (ncmd.topic, ncmd.qos, ncmd.retain) == ("spBv1.0/G/NCMD/N", 0, False)
    payload = decode_payload(ncmd.payload)
    assert payload.seq is None
    assert payload.timestamp == 2000
    (metric,) = payload.metrics
    assert (metric.name, metric.value, metric.datatype) == (
        "Node Control/Rebirth",
        True,
        DataType.BOOLEAN,
    )


def test_h08_command_by_name_type_checked_without_seq() -> None:
    host, _ = born_host()
    publish = host.command("G", "N", "press", [Metric("Count", 5)], 3000, fence_epoch=4)
    assert (publish.topic, publish.qos, publish.retain) == ("spBv1.0/G/DCMD/N/press", 0, False)
    payload = decode_payload(publish.payload)
    assert payload.seq is None
    assert payload.timestamp == 3000
    assert [(m.name, m.value) for m in payload.metrics] == [("Count", 5), ("Andon/FenceEpoch", 4)]
    with pytest.raises(SessionError):
        host.command("G", "N", None, [Metric("Nope", 1)], 1)
    with pytest.raises(SessionError):
        host.command("G", "N", "press", [Metric("Count", 5, DataType.STRING)], 1)
    with pytest.raises(ValueError, match="needs an int"):
        host.command("G", "N", "press", [Metric("Count", "five")], 1)


def test_h10_rebirth_requests_are_debounced_per_node() -> None:
    host = HostApplicationSession("host", rebirth_debounce_ms=5000)
    node, _ = edge()
    update = node.data(None, [Metric("Temperature", 1.0)], 1)
    assert len(rebirths(host.on_message(update.topic, update.payload, 10_000))) == 1
    assert rebirths(host.on_message(update.topic, update.payload, 14_999)) == []
    assert len(rebirths(host.on_message(update.topic, update.payload, 15_000))) == 1
    (stats,) = host.edge_nodes()
    assert stats.rebirth_requests == 2
    assert stats.before_birth == 3


def test_h11_ndeath_with_matching_bdseq_marks_everything_offline_and_stale() -> None:
    host, node = born_host()
    actions = host.on_message(node.death(5000).topic, node.death(5000).payload, 7777)
    assert of(NodeOffline, actions) == [NodeOffline("G", "N", 7777)]
    assert of(DeviceOffline, actions) == [DeviceOffline("G", "N", "press", 7777)]
    stale = of(MetricsStale, actions)
    assert (
        MetricsStale("G", "N", None, ("bdSeq", "Node Control/Rebirth", "Temperature"), 7777)
        in stale
    )
    assert MetricsStale("G", "N", "press", ("Count", "Running"), 7777) in stale
    (stats,) = host.edge_nodes()
    assert not stats.online
    assert stats.devices == ()


def test_h12_ndeath_with_other_bdseq_is_ignored() -> None:
    host, node = born_host()
    old_will = encode_payload(
        Payload(1, (Metric("bdSeq", node.bd_seq - 1 if node.bd_seq else 255, DataType.INT64),))
    )
    actions = host.on_message("spBv1.0/G/NDEATH/N", old_will, 5000)
    assert problems(actions) == ["stale_death"]
    assert not of(NodeOffline, actions)
    death = node.death(1)
    assert of(NodeOffline, feed(host, [death])) == [NodeOffline("G", "N", 1000)]
    assert feed(host, [death]) == []  # a duplicate after the real one changes nothing


def test_h13_ddeath_uses_payload_timestamp() -> None:
    host, node = born_host()
    death = node.device_death("press", 4321)
    actions = host.on_message(death.topic, death.payload, 9999)
    assert actions == [
        DeviceOffline("G", "N", "press", 4321),
        MetricsStale("G", "N", "press", ("Count", "Running"), 4321),
    ]


def _data(node: EdgeNodeSession, value: float) -> Publish:
    return node.data(None, [Metric("Temperature", value)], 2000)


def test_h14_gap_not_filled_fires_rebirth_on_timer() -> None:
    host, node = born_host(reorder_timeout_ms=2000)
    first, _lost, third = _data(node, 1), _data(node, 2), _data(node, 3)
    feed(host, [first])
    actions = feed(host, [third], at=3000)
    assert problems(actions) == ["seq_gap"]
    assert of(MetricsReceived, actions)
    assert host.next_deadline_ms() == 5000
    assert host.on_timer(4999) == []
    fired = host.on_timer(5000)
    assert len(rebirths(fired)) == 1
    assert of(NodeOffline, fired)
    assert host.next_deadline_ms() is None


def test_h14_gap_filled_in_time_cancels_rebirth() -> None:
    host, node = born_host(reorder_timeout_ms=2000)
    first, second, third = _data(node, 1), _data(node, 2), _data(node, 3)
    feed(host, [first, third, second], at=3000)
    assert host.next_deadline_ms() is None
    assert host.on_timer(10_000) == []
    assert feed(host, [_data(node, 4)], at=3001)[0].__class__ is MetricsReceived


def test_h14_device_data_overtaken_by_its_ddeath_is_kept_as_history() -> None:
    """QoS 0 deaths may overtake QoS 1 data (MQTT orders per topic and QoS only): the late
    DDATA fills the gap the DDEATH opened, so its values are the device's last ones."""
    host, node = born_host(reorder_timeout_ms=2000)
    last_data = node.data("press", [Metric("Count", 41)], 2000)
    death = node.device_death("press", 2100)
    opened = feed(host, [death], at=2200)
    assert problems(opened) == ["seq_gap"]
    assert of(DeviceOffline, opened)
    late = feed(host, [last_data], at=2300)
    assert problems(late) == []
    assert rebirths(late) == []
    (received,) = of(MetricsReceived, late)
    assert isinstance(received, MetricsReceived)
    assert [(m.name, m.value, m.is_historical) for m in received.metrics] == [("Count", 41, True)]
    assert host.next_deadline_ms() is None  # the gap is filled: no rebirth later either
    assert host.on_timer(10_000) == []
    target = host.command_target("G", "N", "press", "Count")
    assert target is not None
    assert not target.device_online  # still dead


def test_h15_device_data_after_its_ddeath_in_order_is_not_applied() -> None:
    host, node = born_host()
    feed(host, [node.device_death("press", 2100)])
    stray = host.on_message(
        "spBv1.0/G/DDATA/N/press",
        encode_payload(Payload(timestamp=2200, metrics=(Metric("Count", 1, alias=None),), seq=3)),
        2200,
    )
    assert problems(stray)[:2] == ["before_birth", "rebirth_requested"]
    assert not of(MetricsReceived, stray)


def test_h14_seq_wrap_255_to_0_is_not_a_gap() -> None:
    host, node = born_host()
    actions: list[HostAction] = []
    for i in range(300):
        actions.extend(feed(host, [_data(node, float(i))]))
    assert problems(actions) == []
    assert len(of(MetricsReceived, actions)) == 300


def test_h15_messages_before_nbirth_request_rebirth_and_are_not_applied() -> None:
    host = HostApplicationSession("host")
    _node, births = edge()
    actions = feed(host, births[1:])  # DBIRTH without NBIRTH
    assert problems(actions)[:2] == ["before_birth", "rebirth_requested"]
    assert not of(MetricsReceived, actions)
    assert not of(DeviceOnline, actions)
    quiet = HostApplicationSession("host", rebirth_on_before_birth=False)
    assert rebirths(feed(quiet, births[1:])) == []


def test_h16_unknown_alias_or_metric_requests_rebirth() -> None:
    host, _ = born_host()
    unknown_alias = encode_payload(
        Payload(2000, (Metric(None, 1.0, alias=999, timestamp=1),), seq=2)
    )
    actions = host.on_message("spBv1.0/G/NDATA/N", unknown_alias, 2000)
    assert problems(actions)[:2] == ["unknown_alias", "rebirth_requested"]
    host2, _ = born_host(rebirth_on_unknown=False)
    by_name = encode_payload(Payload(2000, (Metric("Nope", 1.0, timestamp=1),), seq=2))
    actions = host2.on_message("spBv1.0/G/NDATA/N", by_name, 2000)
    assert problems(actions) == ["unknown_metric"]
    assert not rebirths(actions)


def test_h17_aliases_rebuilt_on_birth_and_alias_only_data_resolves() -> None:
    host, node = born_host()
    (received,) = feed(host, [node.data("press", [Metric("Count", -9)], 2000)])
    assert isinstance(received, MetricsReceived)
    assert received.device_id == "press"
    assert received.message_type is MessageType.DDATA
    (count,) = received.metrics
    assert (count.name, count.datatype, count.value, count.timestamp_ms) == (
        "Count",
        DataType.INT32,
        -9,
        2000,
    )
    # A new NBIRTH with different aliases replaces the map.
    moved = Payload(
        3000,
        (Metric("bdSeq", 7, DataType.INT64), Metric("Other", 1.0, DataType.DOUBLE, alias=0)),
        seq=0,
    )
    feed(host, [Publish("spBv1.0/G/NBIRTH/N", encode_payload(moved))])
    data = encode_payload(Payload(3001, (Metric(None, 2.0, alias=0),), seq=1), omit_datatypes=True)
    (resolved,) = host.on_message("spBv1.0/G/NDATA/N", data, 3001)
    assert isinstance(resolved, MetricsReceived)
    assert resolved.metrics[0].name == "Other"


def test_h18_nbirth_accepted_with_any_seq() -> None:
    host = HostApplicationSession("host")
    birth = Payload(
        1, (Metric("bdSeq", 3, DataType.INT64), Metric("T", 1.0, DataType.DOUBLE, alias=1)), seq=200
    )
    actions = host.on_message("spBv1.0/G/NBIRTH/N", encode_payload(birth), 10)
    assert of(NodeOnline, actions) == [NodeOnline("G", "N", 10, 3, 2)]
    data = encode_payload(Payload(2, (Metric(None, 2.0, alias=1),), seq=201), omit_datatypes=True)
    assert problems(host.on_message("spBv1.0/G/NDATA/N", data, 11)) == []


def test_h19_historical_and_transient_flags_pass_through() -> None:
    host, node = born_host(historical_updates_live=False)
    assert host.historical_updates_live is False
    backlog = node.data(
        None, [Metric("Temperature", 5.0, timestamp=50, is_transient=True)], 2000, historical=True
    )
    (received,) = feed(host, [backlog])
    assert isinstance(received, MetricsReceived)
    metric = received.metrics[0]
    assert metric.is_historical
    assert metric.is_transient
    assert metric.timestamp_ms == 50


@pytest.mark.parametrize(
    ("code", "quality"), [(0, Quality.BAD), (192, Quality.GOOD), (500, Quality.STALE)]
)
def test_h20_quality_property_maps(code: int, quality: Quality) -> None:
    host, node = born_host()
    publish = node.data(None, [Metric("Temperature", 1.0, properties={"Quality": code})], 2000)
    (received,) = feed(host, [publish])
    assert isinstance(received, MetricsReceived)
    assert received.metrics[0].quality is quality


def test_h21_malformed_protobuf_is_handled_and_optionally_rebirths() -> None:
    host, _ = born_host()
    actions = host.on_message("spBv1.0/G/NDATA/N", b"\x0a\xff", 2000)
    assert problems(actions)[:2] == ["malformed_payload", "rebirth_requested"]
    quiet, _ = born_host(rebirth_on_malformed=False)
    actions = quiet.on_message("spBv1.0/G/NDATA/N", b"\x0a\xff", 2000)
    assert problems(actions) == ["malformed_payload"]
    assert not rebirths(actions)
    (stats,) = quiet.edge_nodes()
    assert stats.malformed == 1
    assert stats.online
    assert problems(host.on_message("not/sparkplug", b"", 1)) == ["bad_topic"]


def test_births_report_values_online_and_metric_counts() -> None:
    host = HostApplicationSession("host")
    _, births = edge(bd_seq=4)
    actions = feed(host, births, at=1500)
    assert of(NodeOnline, actions) == [NodeOnline("G", "N", 1500, 5, 3)]
    assert of(DeviceOnline, actions) == [DeviceOnline("G", "N", "press", 1500, 2)]
    nbirth = of(MetricsReceived, actions)[0]
    assert isinstance(nbirth, MetricsReceived)
    assert [m.name for m in nbirth.metrics] == ["Node Control/Rebirth", "Temperature"]
    assert nbirth.metrics[1].timestamp_ms == 900
