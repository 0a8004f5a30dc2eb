"""The app with a plant file on disk, the MES running the model loaded from it (as a server
runs it), the users and audit trail on SQLite, and the plant file's editor; ``refusal`` is what
a passive cluster node would answer (None: this node may write)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from andon.api import ApiContext, create_app
from andon.domain.users import Role
from andon.server.edge_registry import EdgeRegistry
from andon.server.live_tags import LiveTagTable
from andon.server.plant_editor import PlantEditor
from andon.server.plant_file import load_plant
from andon.testing.auth import authenticated_client, user_service_for_tests
from andon.testing.memory_historian import InMemoryHistorianStore
from andon.testing.mes import MesRig

__all__ = ["PLANT_TOML", "PlantApi"]

PLANT_TOML = """\
# A small plant for the editor's tests.
[[asset]]
path = "Site"
kind = "site"
timezone = "Europe/Prague"

[[asset]]
path = "Site/Area"
kind = "area"

[[asset]]
path = "Site/Area/Line"
kind = "line"

[[asset]]
path = "Site/Area/Line/Cell"
kind = "cell"
state_map = "m"
[asset.tags]
state = "G/N/Cell/State"
infeed = "G/N/Cell/In"

[[reason]]
id = "jam"
name = "Jam"

[state_map.m]
state = [
  { code = 1, name = "Running", type = "running" },
  { code = 10, name = "Jam", type = "unplanned_downtime", reason = "jam" },
]

[[item]]
id = "w"
name = "Water"

[[rate]]
item = "w"
asset = "Site/Area/Line/Cell"
units_per_minute = 60

[[calendar]]
site = "Site"

[[calendar.shift]]
name = "Day"
start = "06:00"
end = "18:00"
"""


class PlantApi:
    def __init__(self, directory: Path, *, cluster: bool = False) -> None:
        self.directory = directory / "config"
        self.directory.mkdir()
        self.path = self.directory / "plant.toml"
        self.path.write_text(PLANT_TOML, encoding="utf-8")
        url = f"sqlite:///{directory / 'andon.db'}"
        self.mes = MesRig(url, plant=load_plant(self.path))
        self.users = user_service_for_tests(url)
        self.refusal: str | None = None
        self.editor = PlantEditor(
            self.path, self.mes.plant.sha256, self.users.audit, refusal=lambda: self.refusal
        )
        self.app = create_app(
            ApiContext(
                live_tags=LiveTagTable(),
                history=InMemoryHistorianStore(),
                edges=EdgeRegistry(),
                health=lambda: {"database": {"ok": True}},
                metrics_text=lambda: b"",
                users=self.users,
                mes=self.mes.queries,
                plant_editor=self.editor,
                write_refusal=(lambda _asset, _tag: self.refusal) if cluster else None,
            )
        )
        self._clients = {role: authenticated_client(self.app, role) for role in Role}

    def client(self, role: Role = Role.ADMIN) -> TestClient:
        return self._clients[role]

    def backups(self) -> list[Path]:
        return sorted(self.directory.glob("plant.toml.*.bak"))

    def leftovers(self) -> list[Path]:
        """Temporary files of a save (none may stay behind)."""
        return sorted(self.directory.glob(".plant.toml.*"))

    def close(self) -> None:
        self.mes.close()
        self.users.repository.close()
