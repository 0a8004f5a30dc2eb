"""``andon demo``: the single-node architecture (A1) on one box.

Embedded NATS broker with its MQTT listener, the server on SQLite, and one edge agent per line of
a simulated plant (1 site, 2 lines, 6 machines), all in this process except the broker. Every
piece keeps its data in one directory, so a second run resumes where the first stopped.

With ``source="opcua"`` the plant is a PLC: the same simulated lines (same seeds, same speed)
are served by an OPC UA server, and each line's edge agent reads its machines over OPC UA as
it would read real equipment, so the MES sees the same states and counts.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from andon.domain.users import Role
from andon.edge.agent import EdgeAgent, build_simulator
from andon.edge.sources.config import OpcUaDeviceConfig
from andon.edge.sources.simulator import demo_plant
from andon.mqtt.embedded_broker import EmbeddedNatsBroker
from andon.server.auth import UserService
from andon.server.mes_server import MesServer
from andon.settings import (
    EdgeSettings,
    MqttSettings,
    ServerSettings,
    SimulatorSettings,
    SpoolSettings,
)

if TYPE_CHECKING:
    from andon.testing.opcua_plant import OpcUaPlantServer

__all__ = [
    "DEMO_GROUP",
    "DEMO_HOST_ID",
    "DEMO_LINES",
    "DEMO_SOURCES",
    "DEMO_USERS",
    "DemoPlant",
    "demo_plant_copy",
    "demo_plant_file",
    "ensure_demo_users",
    "read_credentials",
]

log = logging.getLogger(__name__)

DEMO_GROUP = "DemoPlant"
DEMO_HOST_ID = "andon-demo"
#: One edge agent per line, as in the per-cabinet architecture (A3).
DEMO_LINES = ("Line1", "Line2")
#: Where the edges read the plant: the built-in simulator, or the simulator behind OPC UA.
DEMO_SOURCES = ("simulator", "opcua")
DemoSource = Literal["simulator", "opcua"]
#: The simulated line of each edge (seed = index + 1), whichever the source.
_DEMO_TIME_SCALE = 10.0
#: Users the demo creates on its first run, with random passwords kept in credentials.txt.
DEMO_USERS = (("admin", Role.ADMIN), ("operator", Role.OPERATOR))


def demo_plant_file() -> Path:
    """examples/plant.toml: inside the installed package (pyproject force-include) or, in a
    source checkout, at the repository root."""
    import andon

    packaged = Path(andon.__file__).resolve().parent / "examples" / "plant.toml"
    if packaged.is_file():
        return packaged
    return Path(__file__).resolve().parents[2] / "examples" / "plant.toml"


def demo_plant_copy(directory: Path) -> Path:
    """The demo's own plant file, ``<directory>/plant.toml``: a copy of the example made on the
    first run. The admin page edits this copy, never the example shipped with Andon."""
    copy = directory.resolve() / "plant.toml"
    if not copy.exists():
        copy.parent.mkdir(parents=True, exist_ok=True)
        temporary = copy.with_name(".plant.toml.tmp")
        temporary.write_bytes(demo_plant_file().read_bytes())
        temporary.replace(copy)
    return copy


def read_credentials(path: Path) -> dict[str, str]:
    """``username password`` per line, as ``ensure_demo_users`` writes them."""
    found: dict[str, str] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            name, _, password = line.strip().partition(" ")
            if name and password:
                found[name] = password
    return found


def ensure_demo_users(users: UserService, path: Path) -> list[tuple[str, str]]:
    """The demo's (username, password) pairs; created on the first run, reused later.

    The file is created with mode 0600 before anything is written to it. If it was deleted
    while the users remain, their passwords are reset so the banner is always true.
    """
    known = read_credentials(path)
    pairs: list[tuple[str, str]] = []
    for name, role in DEMO_USERS:
        password = known.get(name) or secrets.token_urlsafe(12)
        user = users.repository.get_user(name)
        if user is None:
            users.create_user("demo", name, password, role, name.capitalize(), "demo setup")
        elif name not in known:
            users.change_password("demo", name, password, "demo credentials file recreated")
        pairs.append((name, password))
    if dict(pairs) != known:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.writelines(f"{name} {password}\n" for name, password in pairs)
    os.chmod(path, 0o600)  # also when an older file had looser permissions
    return pairs


def _line_simulator(index: int, line: str) -> SimulatorSettings:
    return SimulatorSettings(seed=index + 1, time_scale=_DEMO_TIME_SCALE, line=line)


class DemoPlant:
    def __init__(
        self,
        directory: Path,
        *,
        http_port: int = 8080,
        mqtt_port: int = 1884,
        source: DemoSource = "simulator",
        opcua_port: int = 4840,
    ) -> None:
        if source not in DEMO_SOURCES:
            raise ValueError(f"unknown demo source {source!r}: {' or '.join(DEMO_SOURCES)}")
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.source = source
        self.broker = EmbeddedNatsBroker(directory / "broker", mqtt_port=mqtt_port)
        #: The OPC UA server standing in for the lines' PLCs (source "opcua" only).
        self.plc: OpcUaPlantServer | None = None
        if source == "opcua":
            from andon.testing.opcua_plant import OpcUaPlantServer

            start_ms = time.time_ns() // 1_000_000
            self.plc = OpcUaPlantServer(
                [
                    build_simulator(_line_simulator(i, line), start_ms)
                    for i, line in enumerate(DEMO_LINES)
                ],
                port=opcua_port,
            )
        mqtt = MqttSettings(port=mqtt_port)
        self.server = MesServer(
            ServerSettings(
                host_id=DEMO_HOST_ID,
                database_url=f"sqlite:///{(directory / 'andon.db').resolve()}",
                http_port=http_port,
                mqtt=mqtt,
                plant_file=demo_plant_copy(directory),
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
                    simulator=_line_simulator(index, line),
                    opcua=self._opcua_devices(line),
                )
            )
            for index, line in enumerate(DEMO_LINES)
        ]
        self.credentials_path = directory / "credentials.txt"
        self.credentials = ensure_demo_users(self.server.users, self.credentials_path)

    def _opcua_devices(self, line: str) -> list[OpcUaDeviceConfig]:
        """The line's machines on the OPC UA server (none with the built-in simulator: with
        devices configured, an edge does not run its simulator)."""
        if self.plc is None:
            return []
        machines = {m.machine_id for m in demo_plant().machines if m.line == line}
        return [
            self.plc.device_config(device, backoff_initial_s=0.5, backoff_max_s=5.0)
            for device in self.plc.devices()
            if device in machines
        ]

    def start(self) -> None:
        self.broker.start()
        if self.plc is not None:
            try:
                self.plc.start()
            except BaseException:  # e.g. its port is taken: leave no broker behind
                self.broker.stop()
                raise
        self.server.start()
        for edge in self.edges:
            edge.start()

    def stop(self) -> None:
        for edge in self.edges:
            edge.stop()
        self.server.stop()
        if self.plc is not None:
            self.plc.stop()
        self.broker.stop()
