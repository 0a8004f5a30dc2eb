"""Checklist A lines seen on the wire: Mosquitto's debug log shows every packet the host sends.

H-01 clean session, H-02 the Will, H-03 both subscriptions acknowledged before any publish,
H-04 the STATE birth is the first publish, H-06 STATE offline before DISCONNECT.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from andon.server.mes_server import MesServer
from andon.settings import MqttSettings, ServerSettings
from andon.testing.brokers import SHIPPED_MOSQUITTO_CONF, MosquittoBroker

pytestmark = pytest.mark.integration

HOST_ID = "wire"
CLIENT_ID = f"andon-host-{HOST_ID}"


def _wait(condition: object, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def host_packets(tmp_path: Path, mosquitto_binary: str) -> list[str]:
    """The broker's log lines about our host client, for one start and clean stop."""
    broker = MosquittoBroker(
        SHIPPED_MOSQUITTO_CONF.read_text() + "\nlog_type all\n",
        data_dir=tmp_path / "broker",
        binary=mosquitto_binary,
    )
    broker.start()
    try:
        server = MesServer(
            ServerSettings(
                host_id=HOST_ID,
                database_url=f"sqlite:///{tmp_path / 'h.db'}",
                mqtt=MqttSettings(port=broker.port),
            ),
            serve_http=False,
        )
        server.start()
        _wait(lambda: server.host.online, what="host online")
        server.stop()
        log_path = broker.log_path
        _wait(
            lambda: f"Received DISCONNECT from {CLIENT_ID}" in log_path.read_text(),
            what="DISCONNECT in the broker log",
        )
        # "<epoch>: <message>"; a packet's topics follow on lines of their own, tab-indented.
        lines = [line.split(": ", 1)[-1] for line in log_path.read_text().splitlines()]
    finally:
        broker.stop()
    return [line for line in lines if CLIENT_ID in line or "Will message" in line or
            line.startswith("\t")]  # fmt: skip


def _index(lines: list[str], pattern: str) -> int:
    for i, line in enumerate(lines):
        if re.search(pattern, line):
            return i
    raise AssertionError(f"no line matches {pattern!r} in:\n" + "\n".join(lines))


def test_h01_connect_uses_a_clean_session(host_packets: list[str]) -> None:
    connect = host_packets[_index(host_packets, rf"New client connected .* as {CLIENT_ID}")]
    assert "c1" in connect, connect  # c1: clean session (p2: MQTT 3.1.1)
    assert "p2" in connect, connect


def test_h02_will_is_the_retained_qos1_offline_state(host_packets: list[str]) -> None:
    will = host_packets[_index(host_packets, r"Will message specified")]
    assert "(r1, q1)" in will, will
    assert any(line.strip() == f"spBv1.0/STATE/{HOST_ID}" for line in host_packets)


def test_h03_h04_both_subscriptions_acknowledged_before_the_state_birth(
    host_packets: list[str],
) -> None:
    subscribe = _index(host_packets, rf"Received SUBSCRIBE from {CLIENT_ID}")
    suback = _index(host_packets, rf"Sending SUBACK to {CLIENT_ID}")
    first_publish = _index(host_packets, rf"Received PUBLISH from {CLIENT_ID}")
    assert subscribe < suback < first_publish
    filters = [line.strip() for line in host_packets[subscribe + 1 : suback]]
    assert any(f.startswith(f"spBv1.0/STATE/{HOST_ID}") for f in filters), filters
    assert any(f.startswith("spBv1.0/#") for f in filters), filters
    birth = host_packets[first_publish]
    assert f"'spBv1.0/STATE/{HOST_ID}'" in birth, birth
    assert "q1" in birth, birth
    assert "r1" in birth, birth


def test_h06_clean_shutdown_publishes_offline_state_before_disconnect(
    host_packets: list[str],
) -> None:
    publishes = [
        i for i, line in enumerate(host_packets)
        if f"Received PUBLISH from {CLIENT_ID}" in line and f"spBv1.0/STATE/{HOST_ID}" in line
    ]  # fmt: skip
    disconnect = _index(host_packets, rf"Received DISCONNECT from {CLIENT_ID}")
    assert len(publishes) >= 2, "birth and offline STATE"
    assert publishes[-1] < disconnect
