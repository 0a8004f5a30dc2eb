"""``GET /api/v1/live`` on a real HTTP server (uvicorn on a free port; the TestClient cannot read
an endless stream): the login it needs, the snapshot, a change pushed without polling, the end
event when the server stops, and a client that disconnects being let go."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from andon.api import ApiContext, create_app
from andon.api import live as live_api
from andon.domain.users import Role
from andon.server.edge_registry import EdgeRegistry
from andon.server.http import HttpServer
from andon.server.live_events import LiveEvents, LiveFilter
from andon.server.live_tags import LiveTagTable, LiveUpdate
from andon.sparkplug.model import DataType
from andon.testing.auth import authenticated_client, token_for, user_service_for_tests
from andon.testing.memory_historian import InMemoryHistorianStore
from andon.testing.ports import free_port
from andon.testing.processes import wait_until

SPEED = "Plant/Edge1/Filler1/Speed"
OTHER = "Plant/Edge2/Mixer/Speed"
T0 = 1_767_225_600_000


def _update(path: str, value: float, ts_ms: int) -> LiveUpdate:
    return LiveUpdate(path, value, int(DataType.DOUBLE), "GOOD", ts_ms, ts_ms)


class LiveRig:
    def __init__(self, directory: Path, *, with_hub: bool = True) -> None:
        self.users = user_service_for_tests(f"sqlite:///{directory / 'users.db'}")
        self.table = LiveTagTable()
        self.hub = LiveEvents(self.table) if with_hub else None
        self.app = create_app(
            ApiContext(
                live_tags=self.table,
                history=InMemoryHistorianStore(),
                edges=EdgeRegistry(),
                health=lambda: {"database": {"ok": True}},
                metrics_text=lambda: b"",
                users=self.users,
                live=self.hub,
            )
        )
        self.token = token_for(self.users, Role.OPERATOR)


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LiveRig, str]]:
    monkeypatch.setattr(live_api, "HEARTBEAT_S", 0.2)  # a gone client is noticed at once
    rig = LiveRig(tmp_path)
    rig.table.apply([_update(SPEED, 1.0, T0)])
    server = HttpServer(rig.app, "127.0.0.1", free_port())
    server.start()
    yield rig, server.address
    assert rig.hub is not None
    rig.hub.close()
    server.stop()
    rig.users.repository.close()


class Events:
    """Reads ``event:``/``data:`` frames from a streaming response."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.iter_lines()

    def next(self) -> tuple[str, Any]:
        name, data = "", None
        for line in self._lines:
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
            elif line == "" and name:
                return name, data
        raise AssertionError("the stream ended")


def test_the_stream_starts_with_a_snapshot_then_pushes_changes(
    served: tuple[LiveRig, str],
) -> None:
    rig, address = served
    headers = {"Authorization": f"Bearer {rig.token}"}
    params = {"tag_prefix": "Plant/Edge1/"}
    with (
        httpx.Client(base_url=address, timeout=10.0) as client,
        client.stream("GET", "/api/v1/live", params=params, headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        events = Events(response)
        name, tags = events.next()
        assert (name, [(t["path"], t["value"]) for t in tags]) == ("tags", [(SPEED, 1.0)])
        assert rig.hub is not None
        assert rig.hub.client_count == 1
        # A change made on another thread (ingest's) arrives without asking; another edge's
        # tag is filtered out.
        threading.Thread(
            target=rig.table.apply, args=([_update(OTHER, 5.0, T0), _update(SPEED, 2.5, T0 + 1)],)
        ).start()
        name, tags = events.next()
        assert (name, [(t["path"], t["value"], t["ts_ms"]) for t in tags]) == (
            "tags",
            [(SPEED, 2.5, T0 + 1)],
        )
    # The client went away: the server notices at its next write and lets the client go.
    wait_until(lambda: rig.hub.client_count == 0, 10.0, "the closed stream is still counted")


def test_the_stream_ends_with_a_reason_when_the_server_stops(
    served: tuple[LiveRig, str],
) -> None:
    rig, address = served
    headers = {"Authorization": f"Bearer {rig.token}"}
    with (
        httpx.Client(base_url=address, timeout=10.0) as client,
        client.stream("GET", "/api/v1/live", headers=headers) as response,
    ):
        events = Events(response)
        assert events.next()[0] == "tags"
        assert rig.hub is not None
        rig.hub.close()
        assert events.next() == ("end", {"reason": "the server is stopping"})


def test_the_stream_needs_a_login_and_valid_parameters(served: tuple[LiveRig, str]) -> None:
    rig, address = served
    with httpx.Client(base_url=address, timeout=10.0) as client:
        anonymous = client.get("/api/v1/live")
        assert anonymous.status_code == 401
        bad = client.get(
            "/api/v1/live",
            params={"events": "tags,alarms"},
            headers={"Authorization": f"Bearer {rig.token}"},
        )
        assert bad.status_code == 422
        assert "give tags, states or tags,states" in bad.json()["detail"]


def test_without_a_live_hub_the_stream_is_503(tmp_path: Path) -> None:
    rig = LiveRig(tmp_path, with_hub=False)
    response = authenticated_client(rig.app, Role.OPERATOR).get("/api/v1/live")
    assert response.status_code == 503
    assert "not available" in response.json()["detail"]
    rig.users.repository.close()


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def test_the_snapshot_is_read_off_the_event_loop(
    served: tuple[LiveRig, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rig, address = served
    assert rig.hub is not None
    snapshot = rig.hub.snapshot
    where: list[bool] = []

    def watched(live_filter: LiveFilter) -> Any:
        where.append(_on_event_loop())  # the MES lock may be held: never block the loop
        return snapshot(live_filter)

    monkeypatch.setattr(rig.hub, "snapshot", watched)
    headers = {"Authorization": f"Bearer {rig.token}"}
    with (
        httpx.Client(base_url=address, timeout=10.0) as client,
        client.stream("GET", "/api/v1/live", headers=headers) as response,
    ):
        events = Events(response)
        assert events.next()[0] == "tags"
    assert where == [False]


def test_the_stream_ends_when_its_login_is_logged_out(served: tuple[LiveRig, str]) -> None:
    rig, address = served
    headers = {"Authorization": f"Bearer {rig.token}"}
    with (
        httpx.Client(base_url=address, timeout=10.0) as client,
        client.stream("GET", "/api/v1/live", headers=headers) as response,
    ):
        events = Events(response)
        assert events.next()[0] == "tags"
        assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
        # Checked at the next heartbeat (0.2 s here), even while changes keep flowing.
        assert events.next() == ("end", {"reason": "logged out"})
        assert client.get("/api/v1/live", headers=headers).status_code == 401


def test_streams_are_capped_per_user_and_in_all(served: tuple[LiveRig, str]) -> None:
    rig, address = served
    assert rig.hub is not None
    rig.hub.max_clients_per_user = 1
    rig.hub.max_clients = 2
    first = {"Authorization": f"Bearer {rig.token}"}
    other = {"Authorization": f"Bearer {token_for(rig.users, Role.ENGINEER)}"}
    with (
        httpx.Client(base_url=address, timeout=10.0) as client,
        client.stream("GET", "/api/v1/live", headers=first) as one,
    ):
        # Kept: a dropped reader closes its connection, and so the stream.
        first_events = Events(one)
        assert first_events.next()[0] == "tags"  # subscribed
        again = client.get("/api/v1/live", headers=first)
        assert again.status_code == 429
        assert "limit per user" in again.json()["detail"]
        with client.stream("GET", "/api/v1/live", headers=other) as two:
            second_events = Events(two)
            assert second_events.next()[0] == "tags"
            third = token_for(rig.users, Role.ADMIN)
            full = client.get("/api/v1/live", headers={"Authorization": f"Bearer {third}"})
            assert full.status_code == 503
            assert "its limit" in full.json()["detail"]
    wait_until(lambda: rig.hub.client_count == 0, 10.0, "the closed streams are still counted")
