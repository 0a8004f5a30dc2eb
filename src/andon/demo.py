"""``andon demo``: the single-node architecture (A1) on one box.

Embedded NATS broker with its MQTT listener, the server on SQLite, and one edge agent per line of
a simulated plant (1 site, 2 lines, 6 machines), all in this process except the broker. Every
piece keeps its data in one directory, so a second run resumes where the first stopped.
"""

from __future__ import annotations

import logging
from pathlib import Path

from andon.edge.agent import EdgeAgent
from andon.mqtt.embedded_broker import EmbeddedNatsBroker
from andon.server.mes_server import MesServer
from andon.settings import (
    EdgeSettings,
    MqttSettings,
    ServerSettings,
    SimulatorSettings,
    SpoolSettings,
)

__all__ = ["DEMO_GROUP", "DEMO_HOST_ID", "DEMO_LINES", "DemoPlant"]

log = logging.getLogger(__name__)

DEMO_GROUP = "DemoPlant"
DEMO_HOST_ID = "andon-demo"
#: One edge agent per line, as in the per-cabinet architecture (A3).
DEMO_LINES = ("Line1", "Line2")


class DemoPlant:
    def __init__(self, directory: Path, *, http_port: int = 8080, mqtt_port: int = 1884) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.broker = EmbeddedNatsBroker(directory / "broker", mqtt_port=mqtt_port)
        mqtt = MqttSettings(port=mqtt_port)
        self.server = MesServer(
            ServerSettings(
                host_id=DEMO_HOST_ID,
                database_url=f"sqlite:///{(directory / 'andon.db').resolve()}",
                http_port=http_port,
                mqtt=mqtt,
            )
        )
        self.edges = [
            EdgeAgent(
                EdgeSettings(
                    group_id=DEMO_GROUP,
                    edge_node_id=line,
                    primary_host_id=DEMO_HOST_ID,
                    poll_interval_s=0.5,
                    mqtt=mqtt,
                    spool=SpoolSettings(path=directory / f"edge-{line}.spool.db"),
                    simulator=SimulatorSettings(seed=index + 1, time_scale=10.0, line=line),
                )
            )
            for index, line in enumerate(DEMO_LINES)
        ]

    def start(self) -> None:
        self.broker.start()
        self.server.start()
        for edge in self.edges:
            edge.start()

    def stop(self) -> None:
        for edge in self.edges:
            edge.stop()
        self.server.stop()
        self.broker.stop()
