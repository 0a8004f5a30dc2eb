"""``andon demo``: the single-node architecture (A1) on one box.

Embedded NATS broker with its MQTT listener, the server on SQLite, and one edge agent per line of
a simulated plant (1 site, 2 lines, 6 machines), all in this process except the broker. Every
piece keeps its data in one directory, so a second run resumes where the first stopped.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from andon.domain.users import Role
from andon.edge.agent import EdgeAgent
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

__all__ = [
    "DEMO_GROUP",
    "DEMO_HOST_ID",
    "DEMO_LINES",
    "DEMO_USERS",
    "DemoPlant",
    "demo_plant_file",
    "ensure_demo_users",
    "read_credentials",
]

log = logging.getLogger(__name__)

DEMO_GROUP = "DemoPlant"
DEMO_HOST_ID = "andon-demo"
#: One edge agent per line, as in the per-cabinet architecture (A3).
DEMO_LINES = ("Line1", "Line2")
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
                plant_file=demo_plant_file(),
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
        self.credentials_path = directory / "credentials.txt"
        self.credentials = ensure_demo_users(self.server.users, self.credentials_path)

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
