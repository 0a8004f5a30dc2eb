"""The MQTT connection of a benchmark's edge node: its NDEATH Will and a wait for CONNACK."""

from __future__ import annotations

import threading
import time

from andon.mqtt.interface import MqttEndpoint, Will
from andon.mqtt.paho_client import PahoBrokerClient
from andon.sparkplug.edge_node import EdgeNodeSession

__all__ = ["connect_edge_client"]


class _Connected:
    def __init__(self) -> None:
        self.event = threading.Event()

    def on_connected(self) -> None:
        self.event.set()

    def on_disconnected(self, reason: str) -> None:
        self.event.clear()


def connect_edge_client(
    session: EdgeNodeSession, port: int, client_id: str, host: str = "127.0.0.1"
) -> PahoBrokerClient:
    """A started client whose session is connected (the session has taken the CONNACK)."""
    listener = _Connected()

    def next_will() -> Will:
        will = session.next_will(time.time_ns() // 1_000_000)
        return Will(will.topic, will.payload, will.qos, will.retain)

    client = PahoBrokerClient(
        MqttEndpoint(host=host, port=port, client_id=client_id),
        on_message=lambda _topic, _payload: None,
        listener=listener,
        will_factory=next_will,
    )
    client.start()
    if not listener.event.wait(15):
        client.stop()
        raise TimeoutError(f"no broker on {host}:{port}")
    session.on_connected(time.time_ns() // 1_000_000)
    return client
