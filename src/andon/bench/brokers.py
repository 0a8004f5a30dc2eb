"""The broker a benchmark runs against: the embedded NATS server or Mosquitto, on a free port."""

from __future__ import annotations

from pathlib import Path

from andon.mqtt.embedded_broker import BrokerProcess, EmbeddedNatsBroker
from andon.testing.ports import free_port

__all__ = ["bench_broker"]


def bench_broker(kind: str, data_dir: Path) -> BrokerProcess:
    """A started broker process of ``kind`` ("nats" or "mosquitto")."""
    broker: BrokerProcess
    if kind == "mosquitto":
        from andon.testing.brokers import MosquittoBroker

        broker = MosquittoBroker(data_dir=data_dir)
    elif kind == "nats":
        broker = EmbeddedNatsBroker(data_dir, mqtt_port=free_port())
    else:
        raise ValueError(f"unknown broker {kind!r}: use nats or mosquitto")
    broker.start()
    return broker
