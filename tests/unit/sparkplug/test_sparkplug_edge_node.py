"""Edge-node session rules, named after checklist B (SPARKPLUG.md)."""

from __future__ import annotations

import pytest

from andon.sparkplug.actions import Disconnect, Problem, Publish, Subscribe
from andon.sparkplug.codec import decode_payload, encode_payload, encode_state
from andon.sparkplug.edge_node import (
    BirthsRequired,
    CommandRejected,
    EdgeNodeSession,
    WriteRequested,
)
from andon.sparkplug.errors import SessionError
from andon.sparkplug.model import DataType, Metric, Payload

NODE_METRICS = [Metric("Temperature", 21.5, DataType.DOUBLE), Metric("Mode", None, DataType.STRING)]
DEVICES = {
    "press": [Metric("Count", 7, DataType.INT64), Metric("Running", True, DataType.BOOLEAN)],
    "oven": [Metric("Setpoint", -3, DataType.INT16)],
}
NCMD = "spBv1.0/G/NCMD/N"
STATE = "spBv1.0/STATE/host"


def born_session(**kwargs: object) -> tuple[EdgeNodeSession, list[Publish]]:
    session = EdgeNodeSession("G", "N", bd_seq=kwargs.pop("bd_seq", None), **kwargs)  # type: ignore[arg-type]
    session.next_will(1000)
    session.on_connected(1000)
    return session, session.births(NODE_METRICS, DEVICES, 1001)


def cmd(*metrics: Metric, now: int = 5000) -> bytes:
    return encode_payload(Payload(timestamp=now, metrics=metrics))


def test_e01_will_is_ndeath_qos1_with_bdseq_incrementing_and_wrapping() -> None:
    session = EdgeNodeSession("G", "N", bd_seq=254, primary_host_id=None)
    will = session.next_will(10)
    assert (will.topic, will.qos, will.retain) == ("spBv1.0/G/NDEATH/N", 1, False)
    (bd,) = decode_payload(will.payload).metrics
    assert (bd.name, bd.datatype, bd.value) == ("bdSeq", DataType.INT64, 255)
    assert decode_payload(will.payload).seq is None
    assert session.bd_seq == 255
    session.next_will(11)
    assert session.bd_seq == 0
    assert EdgeNodeSession("G", "N", bd_seq=None).next_will(1) is not None


def test_e01_never_connected_starts_at_zero() -> None:
    session = EdgeNodeSession("G", "N", bd_seq=-1)
    session.next_will(1)
    assert session.bd_seq == 0


def test_e02_nbirth_contents() -> None:
    session, publishes = born_session(bd_seq=41)
    nbirth = publishes[0]
    assert (nbirth.topic, nbirth.qos, nbirth.retain) == ("spBv1.0/G/NBIRTH/N", 0, False)
    payload = decode_payload(nbirth.payload)
    assert payload.seq == 0
    assert payload.timestamp == 1001
    by_name = {m.name: m for m in payload.metrics}
    assert by_name["bdSeq"].value == 42 == session.bd_seq
    assert by_name["bdSeq"].datatype is DataType.INT64
    rebirth = by_name["Node Control/Rebirth"]
    assert (rebirth.value, rebirth.datatype, rebirth.alias) == (False, DataType.BOOLEAN, None)
    for name in ("Temperature", "Mode"):
        metric = by_name[name]
        assert metric.datatype is not None
        assert metric.timestamp == 1001
        assert metric.alias is not None
    assert by_name["Mode"].is_null


def test_e03_dbirths_follow_with_continuous_seq_and_unique_aliases() -> None:
    _, publishes = born_session()
    assert [p.topic for p in publishes] == [
        "spBv1.0/G/NBIRTH/N",
        "spBv1.0/G/DBIRTH/N/press",
        "spBv1.0/G/DBIRTH/N/oven",
    ]
    payloads = [decode_payload(p.payload) for p in publishes]
    assert [p.seq for p in payloads] == [0, 1, 2]
    aliases = [m.alias for p in payloads for m in p.metrics if m.alias is not None]
    assert len(aliases) == len(set(aliases)) == 5


def test_e03_no_data_before_births() -> None:
    session = EdgeNodeSession("G", "N", bd_seq=None)
    session.next_will(1)
    session.on_connected(1)
    with pytest.raises(SessionError):
        session.data(None, [Metric("Temperature", 1.0)], 2)


def test_data_carries_only_aliases_and_continues_seq_at_data_qos() -> None:
    session, _ = born_session()
    publish = session.data("press", [Metric("Count", 8)], 2000)
    assert publish.topic == "spBv1.0/G/DDATA/N/press"
    assert publish.qos == 1
    payload = decode_payload(publish.payload)
    assert payload.seq == 3
    (metric,) = payload.metrics
    assert metric.name is None
    assert metric.datatype is None
    assert metric.alias is not None
    assert metric.timestamp == 2000
    assert metric.value == 8
    historical = decode_payload(
        session.data(None, [Metric("Temperature", 1.0)], 1, historical=True).payload
    )
    assert historical.seq == 4
    assert historical.metrics[0].is_historical
    with pytest.raises(SessionError):
        session.data("press", [Metric("Unknown", 1)], 1)
    with pytest.raises(SessionError):
        session.data("nope", [Metric("Count", 1)], 1)


def test_seq_wraps_255_to_0() -> None:
    session, _ = born_session()
    seqs = [
        decode_payload(session.data(None, [Metric("Temperature", 1.0)], i).payload).seq
        for i in range(256)
    ]
    assert seqs[252:255] == [255, 0, 1]


def test_e04_subscriptions_qos1() -> None:
    session = EdgeNodeSession("G", "N", bd_seq=None, primary_host_id="host")
    session.next_will(1)
    (subscribe,) = session.on_connected(1)
    assert isinstance(subscribe, Subscribe)
    assert subscribe.filters == ((NCMD, 1), ("spBv1.0/G/DCMD/N/+", 1), (STATE, 1))
    plain = EdgeNodeSession("G", "N", bd_seq=None)
    plain.next_will(1)
    actions = plain.on_connected(1)
    assert actions[1] == BirthsRequired()
    assert all(qos == 1 for _, qos in actions[0].filters)  # type: ignore[union-attr]


def primary_session() -> EdgeNodeSession:
    session = EdgeNodeSession("G", "N", bd_seq=None, primary_host_id="host")
    session.next_will(1)
    session.on_connected(1)
    return session


def test_e05_no_birth_until_primary_host_online() -> None:
    session = primary_session()
    with pytest.raises(SessionError):
        session.births(NODE_METRICS, DEVICES, 2)
    assert session.on_message(STATE, encode_state(False, 100), 2) == []
    assert session.on_message("spBv1.0/STATE/other", encode_state(True, 200), 2) == []
    assert session.on_message(STATE, encode_state(True, 200), 3) == [BirthsRequired()]
    assert session.on_message(STATE, encode_state(True, 200), 3) == []  # already announced
    session.births(NODE_METRICS, DEVICES, 4)


def test_e05_older_online_state_is_ignored() -> None:
    session = primary_session()
    session.on_message(STATE, encode_state(False, 500), 2)
    assert session.on_message(STATE, encode_state(True, 400), 3) == []
    assert not session.primary_host_online


def test_e06_the_same_offline_state_seen_again_after_reconnecting_is_waited_out() -> None:
    session = primary_session()
    session.on_message(STATE, encode_state(True, 200), 3)
    session.births(NODE_METRICS, DEVICES, 4)
    death, disconnect = session.on_message(STATE, encode_state(False, 300), 5)
    assert isinstance(death, Publish)
    assert isinstance(disconnect, Disconnect)
    session.on_disconnected()
    session.next_will(6)
    session.on_connected(6)
    # The retained offline STATE again, on the next (or the same) server: no second walk-away.
    assert session.on_message(STATE, encode_state(False, 300), 7) == []
    # The host comes back: births.
    assert session.on_message(STATE, encode_state(True, 400), 8) == [BirthsRequired()]


def test_e05_a_new_host_session_after_our_births_asks_for_births_again() -> None:
    session = primary_session()
    session.on_message(STATE, encode_state(True, 200), 3)
    session.births(NODE_METRICS, DEVICES, 4)
    # The same session's STATE again (e.g. retained, after our reconnect): nothing to do.
    assert session.on_message(STATE, encode_state(True, 200), 5) == []
    # A newer host session (a broker restored the old retained STATE before the host was
    # back): the host may have missed what we sent since our births.
    assert session.on_message(STATE, encode_state(True, 900), 6) == [BirthsRequired()]
    assert not session.is_born


def test_e06_offline_state_publishes_ndeath_and_moves_to_next_server() -> None:
    session = primary_session()
    session.on_message(STATE, encode_state(True, 200), 3)
    session.births(NODE_METRICS, DEVICES, 4)
    assert session.on_message(STATE, encode_state(False, 150), 5) == []  # stale Will: ignored
    death, disconnect = session.on_message(STATE, encode_state(False, 200), 6)
    assert isinstance(death, Publish)
    assert death.topic == "spBv1.0/G/NDEATH/N"
    assert decode_payload(death.payload).metrics[0].value == session.bd_seq
    assert disconnect == Disconnect("primary host offline", next_server=True)


def test_e06_malformed_state_is_a_problem_not_an_exception() -> None:
    session = primary_session()
    (problem,) = session.on_message(STATE, b"{nope", 2)
    assert isinstance(problem, Problem)
    assert problem.kind == "malformed_state"


def test_e08_rebirth_keeps_bdseq_and_restarts_seq() -> None:
    session, _ = born_session()
    session.data(None, [Metric("Temperature", 1.0)], 2)
    bd_seq = session.bd_seq
    actions = session.on_message(
        NCMD, cmd(Metric("Node Control/Rebirth", True, DataType.BOOLEAN)), 3
    )
    assert actions == [BirthsRequired()]
    with pytest.raises(SessionError):  # data stops until the births
        session.data(None, [Metric("Temperature", 1.0)], 4)
    publishes = session.births(NODE_METRICS, DEVICES, 5)
    nbirth = decode_payload(publishes[0].payload)
    assert nbirth.seq == 0
    assert next(m.value for m in nbirth.metrics if m.name == "bdSeq") == bd_seq


def test_e09_intentional_death_carries_current_bdseq_without_seq() -> None:
    session, _ = born_session(bd_seq=9)
    death = session.death(7)
    payload = decode_payload(death.payload)
    assert death.topic == "spBv1.0/G/NDEATH/N"
    assert death.retain is False
    assert payload.seq is None
    assert payload.metrics[0].value == 10


def test_e10_ddeath_has_seq_and_device_needs_rebirth() -> None:
    session, _ = born_session()
    death = session.device_death("press", 9)
    assert death.topic == "spBv1.0/G/DDEATH/N/press"
    assert decode_payload(death.payload).seq == 3
    with pytest.raises(SessionError):
        session.data("press", [Metric("Count", 1)], 10)
    rebirth = session.device_birth("press", DEVICES["press"], 11)
    assert decode_payload(rebirth.payload).seq == 4
    assert decode_payload(session.data("press", [Metric("Count", 1)], 12).payload).seq == 5


def test_write_requested_resolves_aliases_and_types() -> None:
    session, publishes = born_session()
    oven = decode_payload(publishes[2].payload).metrics[0]
    by_alias = Metric(None, -5 & 0xFFFF_FFFF, alias=oven.alias)
    (write,) = session.on_message(
        "spBv1.0/G/DCMD/N/oven", encode_payload(Payload(1, (by_alias,))), 3
    )
    assert write == WriteRequested("oven", (Metric("Setpoint", -5, DataType.INT16),), None)
    (rejected,) = session.on_message(NCMD, cmd(Metric("Nope", 1, DataType.INT32)), 4)
    assert isinstance(rejected, CommandRejected)
    (bad_type,) = session.on_message(
        "spBv1.0/G/DCMD/N/oven", cmd(Metric("Setpoint", "x", DataType.STRING)), 4
    )
    assert isinstance(bad_type, CommandRejected)


def test_e11_lower_fence_epoch_is_rejected() -> None:
    session, _ = born_session()
    session.highest_fence_epoch = 5
    write = Metric("Count", 1, DataType.INT64)
    (ok,) = session.on_message(
        "spBv1.0/G/DCMD/N/press", cmd(write, Metric("Andon/FenceEpoch", 6, DataType.INT64)), 1
    )
    assert isinstance(ok, WriteRequested)
    assert ok.fence_epoch == 6
    assert session.highest_fence_epoch == 6
    (rejected,) = session.on_message(
        "spBv1.0/G/DCMD/N/press", cmd(write, Metric("Andon/FenceEpoch", 5, DataType.INT64)), 2
    )
    assert isinstance(rejected, CommandRejected)
    assert rejected.fence_epoch == 5
    assert "below" in rejected.reason
    assert session.highest_fence_epoch == 6


def test_bad_commands_are_problems() -> None:
    session, _ = born_session()
    (problem,) = session.on_message(NCMD, b"\xff\xff", 1)
    assert isinstance(problem, Problem)
    assert problem.kind == "malformed_payload"
    assert session.on_message("spBv1.0/G/NCMD/other", cmd(), 1) == []
    (bad_topic,) = session.on_message("garbage", b"", 1)
    assert isinstance(bad_topic, Problem)
    assert bad_topic.kind == "bad_topic"


def test_on_disconnected_requires_births_again() -> None:
    session, _ = born_session()
    session.on_disconnected()
    assert not session.is_born
    with pytest.raises(SessionError):
        session.data(None, [Metric("Temperature", 1.0)], 1)
    session.next_will(2)
    assert session.on_connected(2)[-1] == BirthsRequired()
    assert decode_payload(session.births(NODE_METRICS, {}, 3)[0].payload).seq == 0
