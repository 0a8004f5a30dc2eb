"""``POST /api/v1/tags/write`` through FastAPI's TestClient, on ``InMemoryTagWriter``.

The writer's equipment is line 1 of the simulated plant (writable ``Mode`` and
``Setpoint/Speed``), so an accepted write changes the machine and a refused one comes back with
the simulator's reason. Checked here: who may write, the status of every refusal (nothing
sent, nothing audited), and the audit entry of every write that was sent.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from andon.api import ApiContext, create_app
from andon.domain.users import Role
from andon.edge.sources.simulator import PlantConfig, PlantSimulator, demo_plant
from andon.server.edge_registry import EdgeRegistry
from andon.server.live_tags import LiveTagTable
from andon.testing.auth import authenticated_client, user_service_for_tests
from andon.testing.memory_historian import InMemoryHistorianStore
from andon.testing.tag_writes import InMemoryTagWriter

SETPOINT = "Plant/Edge1/Filler1/Setpoint/Speed"
MODE = "Plant/Edge1/Filler1/Mode"


class Rig:
    def __init__(self, directory: Path, *, writes: bool = True) -> None:
        plant = demo_plant()
        line1 = tuple(m for m in plant.machines if m.line == "Line1")
        source = PlantSimulator(
            PlantConfig(site=plant.site, machines=line1), start_ms=time.time_ns() // 1_000_000
        )
        self.writer = InMemoryTagWriter(source, group_id="Plant", edge_node_id="Edge1")
        self.users = user_service_for_tests(f"sqlite:///{directory / 'users.db'}")
        self.app: FastAPI = create_app(
            ApiContext(
                live_tags=LiveTagTable(),
                history=InMemoryHistorianStore(),
                edges=EdgeRegistry(),
                health=lambda: {"database": {"ok": True}},
                metrics_text=lambda: b"",
                users=self.users,
                write_tag=self.writer.write if writes else None,
            )
        )
        self.engineer = authenticated_client(self.app, Role.ENGINEER)

    def audit(self) -> list[dict[str, Any]]:
        response = authenticated_client(self.app, Role.ADMIN).get(
            "/api/v1/audit", params={"entity": "tag"}
        )
        assert response.status_code == 200, response.text
        entries: list[dict[str, Any]] = response.json()
        return entries


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path)
    yield rig
    rig.users.repository.close()


def test_an_engineer_writes_and_the_audit_trail_records_it(rig: Rig) -> None:
    previous = rig.writer.value(SETPOINT)
    response = rig.engineer.post(
        "/api/v1/tags/write",
        json={"path": SETPOINT, "value": 80, "comment": "  slower for the new bottles "},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["result"] == "written"
    assert (body["path"], body["requested"], body["value"]) == (SETPOINT, 80.0, 80.0)
    assert body["previous"] == previous
    assert body["error"] is None
    assert rig.writer.value(SETPOINT) == 80.0
    entry, request = rig.audit()  # newest first: the outcome after the request
    assert request["id"] == body["request_audit_id"] < body["audit_id"]
    assert (request["action"], request["entity_id"]) == ("tag.write_requested", SETPOINT)
    assert request["before"] == {"value": previous}
    assert request["after"] == {"requested": 80.0, "fence_epoch": None}
    assert request["comment"] == "slower for the new bottles"
    assert entry["id"] == body["audit_id"]
    assert (entry["username"], entry["action"], entry["entity_id"]) == (
        "test-engineer",
        "tag.write",
        SETPOINT,
    )
    assert entry["before"] == {"value": previous}
    assert entry["after"] == {
        "requested": 80.0,
        "result": "written",
        "value": 80.0,
        "error": None,
        "fence_epoch": None,
    }
    assert entry["comment"] == "slower for the new bottles"
    assert entry["at"].endswith("+00:00")
    # An admin may write too.
    admin = authenticated_client(rig.app, Role.ADMIN)
    assert admin.post("/api/v1/tags/write", json={"path": MODE, "value": "Idle"}).status_code == 200


def test_a_write_the_edge_refuses_is_answered_and_audited(rig: Rig) -> None:
    response = rig.engineer.post("/api/v1/tags/write", json={"path": MODE, "value": "Party"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["result"] == "rejected"
    assert body["value"] == body["previous"] == "Production"
    assert "Mode must be one of Production, Idle, Maintenance" in body["error"]
    entry, request = rig.audit()
    assert request["action"] == "tag.write_requested"
    assert entry["after"]["result"] == "rejected"
    assert entry["after"]["requested"] == "Party"
    assert entry["after"]["error"] == body["error"]


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.SUPERVISOR])
def test_operators_and_supervisors_may_not_write(rig: Rig, role: Role) -> None:
    response = authenticated_client(rig.app, role).post(
        "/api/v1/tags/write", json={"path": SETPOINT, "value": 80}
    )
    assert response.status_code == 403
    assert "needs role engineer" in response.json()["detail"]
    assert rig.writer.sent == []
    assert rig.audit() == []


def test_anonymous_writes_are_401(rig: Rig) -> None:
    response = TestClient(rig.app).post("/api/v1/tags/write", json={"path": SETPOINT, "value": 1})
    assert response.status_code == 401
    assert rig.writer.sent == []


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"path": SETPOINT, "value": "fast"}, 422, "DOUBLE needs a number"),
        ({"path": SETPOINT, "value": True}, 422, "DOUBLE needs a number"),
        ({"path": MODE, "value": 3}, 422, "STRING needs a string"),
        ({"path": SETPOINT, "value": None}, 422, "null cannot be written"),
        ({"path": "Plant/Edge1/Filler1/State/Code", "value": 1}, 422, "is read-only"),
        ({"path": "Plant/Edge1/Filler1/Nope", "value": 1}, 404, "no tag"),
    ],
)
def test_refused_writes_send_nothing_and_audit_nothing(
    rig: Rig, body: dict[str, Any], status: int, detail: str
) -> None:
    before = rig.writer.value(SETPOINT)
    response = rig.engineer.post("/api/v1/tags/write", json=body)
    assert response.status_code == status, response.text
    assert detail in response.json()["detail"]
    assert rig.writer.sent == []
    assert rig.writer.value(SETPOINT) == before
    assert rig.audit() == []


@pytest.mark.parametrize(
    "body",
    [
        {"value": 1},
        {"path": SETPOINT},
        {"path": SETPOINT, "value": 1, "unknown": 2},
        {"path": "", "value": 1},
        {"path": SETPOINT, "value": 1, "comment": "x" * 2001},
    ],
)
def test_malformed_bodies_are_422(rig: Rig, body: dict[str, Any]) -> None:
    assert rig.engineer.post("/api/v1/tags/write", json=body).status_code == 422
    assert rig.writer.sent == []


def test_offline_equipment_is_409_and_no_broker_503(rig: Rig) -> None:
    rig.writer.offline_devices.add("Filler1")
    response = rig.engineer.post("/api/v1/tags/write", json={"path": SETPOINT, "value": 80})
    assert response.status_code == 409
    assert "device Filler1 of Plant/Edge1 is offline" in response.json()["detail"]
    rig.writer.broker_online = False
    response = rig.engineer.post("/api/v1/tags/write", json={"path": SETPOINT, "value": 80})
    assert response.status_code == 503
    assert "no broker connection is online" in response.json()["detail"]
    assert rig.writer.sent == []
    assert rig.audit() == []


def test_a_server_without_writes_answers_503(tmp_path: Path) -> None:
    rig = Rig(tmp_path, writes=False)
    response = rig.engineer.post("/api/v1/tags/write", json={"path": SETPOINT, "value": 80})
    assert response.status_code == 503
    assert response.json()["detail"] == "this server does not write to equipment"
    rig.users.repository.close()


def test_without_the_audit_trail_nothing_is_sent(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    before = rig.writer.value(SETPOINT)

    def database_down(*args: object, **kwargs: object) -> int:
        raise OSError("database unavailable")

    monkeypatch.setattr(rig.users.audit, "record", database_down)
    response = rig.engineer.post(
        "/api/v1/tags/write", json={"path": SETPOINT, "value": 70, "comment": "trial"}
    )
    assert response.status_code == 503
    assert "nothing was sent" in response.json()["detail"]
    assert rig.writer.sent == []  # the equipment never saw it
    assert rig.writer.value(SETPOINT) == before


def test_a_write_that_was_sent_is_answered_even_if_its_outcome_cannot_be_audited(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    record = rig.users.audit.record

    def down_after_the_request(*args: Any, **kwargs: Any) -> int:
        if args[1] == "tag.write":  # the database went away while the command was out
            raise OSError("database unavailable")
        result: int = record(*args, **kwargs)
        return result

    monkeypatch.setattr(rig.users.audit, "record", down_after_the_request)
    response = rig.engineer.post(
        "/api/v1/tags/write", json={"path": SETPOINT, "value": 70, "comment": "trial"}
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["result"], body["audit_id"]) == ("written", None)
    [request] = rig.audit()  # the request's entry was written before sending
    assert request["id"] == body["request_audit_id"]
    # The equipment changed: the log keeps the outcome the audit trail could not.
    assert f"test-engineer wrote {SETPOINT} = 70.0 (written" in caplog.text
