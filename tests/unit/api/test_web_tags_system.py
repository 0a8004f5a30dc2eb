"""The tags page (tree level by level, live values and quality, a tag's detail with its trend and
the engineer-only write slot) and the system page (edges, devices, backlogs, brokers, server,
database, and the cluster document when the server has one); the machines view without a
plant file."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from jinja2 import ChoiceLoader, DictLoader

from andon.api import ApiContext, create_app
from andon.domain.users import Role
from andon.server.edge_registry import EdgeRegistry
from andon.server.live_tags import LiveTagTable, LiveUpdate
from andon.sparkplug.model import DataType
from andon.storage.types import Sample
from andon.testing.auth import authenticated_client, user_service_for_tests
from andon.testing.memory_historian import InMemoryHistorianStore
from andon.web.render import templates

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SPEED = "Plant/Edge1/Filler1/Process/Speed"
CODE = "Plant/Edge1/Filler1/State/Code"
HISTORIC = "Plant/Edge1/Filler1/Old"


class Rig:
    def __init__(self, directory: Path, cluster: Callable[[], dict[str, Any]] | None = None):
        self.users = user_service_for_tests(f"sqlite:///{directory / 'users.db'}")
        self.live = LiveTagTable()
        self.edges = EdgeRegistry()
        self.store = InMemoryHistorianStore()
        self.health: dict[str, dict[str, Any]] = {
            "mqtt": {"ok": True, "brokers": {"10.0.0.5:1883": True, "10.0.0.6:1883": False},
                     "host_id": "andon-a"},
            "database": {"ok": False, "dialect": "postgresql"},
            "historian": {"ok": False, "queued": 12, "committed_total": 345, "spooled_samples": 67},
            "ingest": {"ok": True, "queued": 0},
        }  # fmt: skip
        self.app: FastAPI = create_app(
            ApiContext(
                live_tags=self.live,
                history=self.store,
                edges=self.edges,
                health=lambda: self.health,
                metrics_text=lambda: b"",
                users=self.users,
                site_name="Testplant",
                cluster_status=cluster,
            )
        )


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path)
    rig.live.apply(
        [
            LiveUpdate(SPEED, 12.5, int(DataType.DOUBLE), "GOOD", T0, T0),
            LiveUpdate(CODE, 3, int(DataType.INT32), "GOOD", T0, T0),
            LiveUpdate("Plant/Edge2/Mixer/Speed", 1.0, int(DataType.DOUBLE), "GOOD", T0, T0),
        ]
    )
    rig.live.mark_stale("Plant/Edge2", None, T0 + 1)
    rig.store.write_batch([Sample(HISTORIC, T0 - 1000, 7, datatype=int(DataType.INT64))])
    yield rig
    rig.users.repository.close()


def test_the_tag_tree_is_browsed_one_level_at_a_time(rig: Rig) -> None:
    operator = authenticated_client(rig.app, Role.OPERATOR)
    top = operator.get("/tags").text
    assert 'href="/tags?prefix=Plant/"' in top
    assert "3 tags" in top
    plant = operator.get("/tags?prefix=Plant").text  # the trailing "/" is optional
    assert 'href="/tags?prefix=Plant/Edge1/"' in plant
    assert "1 stale" in plant  # Edge2's tag is stale after its death
    device = operator.get("/tags?prefix=Plant/Edge1/Filler1/Process/").text
    assert f'data-tag="{SPEED}">12.50<' in device  # updated in place by live.js
    assert f'data-tag-quality="{SPEED}">GOOD<' in device
    assert 'data-live-tags="Plant/Edge1/Filler1/Process/"' in device
    assert "2026-01-01 00:00:00" in device  # the site's clock; without a plant file, UTC
    found = operator.get("/tags?q=speed").text
    assert f'href="/tags/view?path={SPEED}"' in found
    assert "Plant/Edge2/Mixer/Speed" in found
    assert "No tags match yet" in operator.get("/tags?q=nothing-like-this").text


def test_a_tag_detail_has_its_trend_and_a_write_slot_for_engineers_only(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The write API brings templates/tag_write.html; this stands in for it.
    slot = DictLoader({"tag_write.html": '<div id="write-slot">write {{ path }}</div>'})
    monkeypatch.setattr(templates.env, "loader", ChoiceLoader([slot, templates.env.loader]))
    engineer = authenticated_client(rig.app, Role.ENGINEER).get(f"/tags/view?path={SPEED}")
    assert engineer.status_code == 200
    html = engineer.text
    assert '<script src="/static/vendor/uplot-1.6.32.iife.min.js"></script>' in html
    assert f'id="trend" data-path="{SPEED}"' in html
    assert "DOUBLE" in html
    assert f'<div id="write-slot">write {SPEED}</div>' in html
    for role in (Role.OPERATOR, Role.SUPERVISOR):
        other = authenticated_client(rig.app, role).get(f"/tags/view?path={SPEED}").text
        assert "write-slot" not in other
    only_history = authenticated_client(rig.app, Role.OPERATOR).get(f"/tags/view?path={HISTORIC}")
    assert only_history.status_code == 200
    assert "No live value" in only_history.text
    missing = authenticated_client(rig.app, Role.OPERATOR).get("/tags/view?path=No/Such/Tag")
    assert missing.status_code == 404


def test_vendored_uplot_is_served(rig: Rig) -> None:
    client = authenticated_client(rig.app, Role.OPERATOR)
    script = client.get("/static/vendor/uplot-1.6.32.iife.min.js")
    assert script.status_code == 200
    assert "uPlot" in script.text[:2000]
    assert client.get("/static/vendor/uplot-1.6.32.min.css").status_code == 200
    assert "MIT" in client.get("/static/vendor/uplot.LICENSE").text
    for name in ("live.js", "trend.js"):
        assert client.get(f"/static/{name}").status_code == 200


def test_the_system_page_draws_the_running_architecture(rig: Rig) -> None:
    rig.edges.node_birth("Plant", "Edge1", 0, 10, T0)
    rig.edges.device_birth("Plant", "Edge1", "Filler1", 8, T0)
    rig.edges.spool_report(
        "Plant", "Edge1", {"Records": 4, "Values": 1200, "OldestMs": T0 - 60_000, "Flushing": True}
    )
    rig.edges.node_birth("Plant", "Edge2", 0, 3, T0)
    rig.edges.device_birth("Plant", "Edge2", "Mixer", 2, T0)
    rig.edges.node_death("Plant", "Edge2", T0 + 5)
    html = authenticated_client(rig.app, Role.ENGINEER).get("/system").text
    edge1 = html[html.index('data-edge="Plant/Edge1"') : html.index('data-edge="Plant/Edge2"')]
    assert 'Filler1 <span class="badge ok">ONLINE</span>' in edge1
    assert "<strong>1,200 values</strong> in 4 records" in edge1
    assert "SENDING BACKLOG" in edge1
    edge2 = html[html.index('data-edge="Plant/Edge2"') :]
    assert 'Mixer <span class="badge bad">OFFLINE</span>' in edge2  # the inactive part shows
    assert '10.0.0.6:1883 <span class="badge bad">DISCONNECTED</span>' in html
    assert "andon-a" in html
    assert "<strong>active</strong> (single node)" in html
    assert 'postgresql <span class="badge bad">DOWN</span>' in html
    assert "67 samples" in html  # the historian spools while the database is down
    assert "Cluster" not in html
    fragment = authenticated_client(rig.app, Role.ADMIN).get("/fragments/system")
    assert fragment.text.lstrip().startswith('<div id="diagram"')


def test_the_system_page_shows_the_cluster_when_the_server_has_one(tmp_path: Path) -> None:
    status = {
        "nodes": [
            {"node": "andon-a", "role": "active", "epoch": 7},
            {"node": "andon-b", "role": "standby", "epoch": 7},
        ],
        "domains": {"line-1": "andon-a"},
    }
    rig = Rig(tmp_path, cluster=lambda: status)
    try:
        html = authenticated_client(rig.app, Role.ADMIN).get("/system").text
        assert '<section class="card cluster"><h2>Cluster</h2>' in html
        assert "<th>node</th><th>role</th><th>epoch</th>" in html
        assert "<td>andon-b</td><td>standby</td><td>7</td>" in html
        assert "<dt>line-1</dt><dd>andon-a</dd>" in html
    finally:
        rig.users.repository.close()


def test_without_a_plant_file_the_overview_is_the_machines_view(rig: Rig) -> None:
    rig.edges.node_birth("Plant", "Edge1", 0, 2, T0)
    rig.edges.device_birth("Plant", "Edge1", "Filler1", 2, T0)
    html = authenticated_client(rig.app, Role.OPERATOR).get("/").text
    assert "<title>Machines · Testplant · Andon</title>" in html
    assert 'data-device="Filler1"' in html
    operator = authenticated_client(rig.app, Role.OPERATOR).get("/operator").text
    assert "No plant file is loaded" in operator
