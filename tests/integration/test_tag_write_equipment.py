"""Writes from the API to real protocol peers: asyncua's OPC UA server, pymodbus's TCP server.

Mosquitto, the real MesServer (SQLite) and the real EdgeAgent with one device. An engineer's
``POST /api/v1/tags/write`` changes the server's variable (or the holding register, read back by
an independent Modbus client); the new value reaches the live tags and the historian; the audit
trail holds the write. What the edge refuses comes back as rejected with its reason, a tag the
birth marks read-only is refused before sending, and an offline device is 409.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _modbus_rig import ModbusServer, device_config
from _opcua_rig import DEVICE, OpcUaServer, opcua_device
from _sandf_rig import NODE, edge_settings, server_settings, start_server, wait_for
from fastapi.testclient import TestClient
from pymodbus.client import ModbusTcpClient

from andon.domain.users import Role
from andon.edge.agent import EdgeAgent
from andon.server.mes_server import MesServer
from andon.settings import EdgeSettings
from andon.testing.auth import authenticated_client
from andon.testing.brokers import MosquittoBroker
from andon.testing.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.mosquitto]


@pytest.fixture
def broker(tmp_path: Path, mosquitto_binary: str) -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker(data_dir=tmp_path / "broker", binary=mosquitto_binary)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@dataclass
class Plant:
    server: MesServer
    edge: EdgeAgent
    engineer: TestClient

    def path(self, device: str, name: str) -> str:
        return f"Plant1/{NODE}/{device}/{name}"

    def write(self, path: str, value: Any, comment: str = "") -> Any:
        return self.engineer.post(
            "/api/v1/tags/write", json={"path": path, "value": value, "comment": comment}
        )

    def live(self, path: str) -> Any:
        tag = self.server.live_tags.get(path)
        return None if tag is None else tag.value

    def stale(self, path: str) -> bool:
        tag = self.server.live_tags.get(path)
        return tag is not None and tag.stale

    def stored(self, path: str) -> list[Any]:
        self.server.ingest.drain(1.0)
        self.server.historian.flush(5.0)
        return [s.value for s in self.server.store.history(path, 0, 2**62)]

    def audit(self) -> list[Any]:
        """The outcomes of the writes, newest first; each has its request's entry before it."""
        entries = self.server.users.audit.list(entity="tag")
        outcomes = [e for e in entries if e.action == "tag.write"]
        assert len(entries) == 2 * len(outcomes)  # one "tag.write_requested" per outcome
        return outcomes


def _plant(tmp_path: Path, broker: MosquittoBroker, **devices: Any) -> Plant:
    server = start_server(server_settings(tmp_path, broker.port))
    base = edge_settings(tmp_path, broker.port).model_dump()
    edge = EdgeAgent(EdgeSettings.model_validate({**base, **devices}))
    edge.start()
    return Plant(server, edge, authenticated_client(server.api, Role.ENGINEER))


@pytest.fixture
def opcua_plant(tmp_path: Path, broker: MosquittoBroker) -> Iterator[tuple[Plant, OpcUaServer]]:
    opcua = OpcUaServer(free_port())
    opcua.start()
    plant = _plant(tmp_path, broker, opcua=[opcua_device(opcua.port)])
    try:
        yield plant, opcua
    finally:
        plant.edge.stop()
        plant.server.stop()
        opcua.close()


def test_an_api_write_changes_the_opc_ua_variable(
    opcua_plant: tuple[Plant, OpcUaServer],
) -> None:
    plant, opcua = opcua_plant
    setpoint = plant.path(DEVICE, "Setpoint")
    wait_for(lambda: plant.live(setpoint) == 120.25, "the device's birth never reached the server")

    response = plant.write(setpoint, 99.5, comment="new recipe")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["result"], body["value"], body["previous"]) == ("written", 99.5, 120.25)
    assert opcua.read("Setpoint") == 99.5
    assert plant.live(setpoint) == 99.5
    wait_for(lambda: 99.5 in plant.stored(setpoint), "the written value never reached history")
    [entry] = plant.audit()
    assert (entry.username, entry.entity_id, entry.comment) == (
        "test-engineer",
        setpoint,
        "new recipe",
    )
    assert entry.before == {"value": 120.25}
    assert entry.after["result"] == "written"
    assert entry.after["requested"] == 99.5

    # Out of the configured range: the edge refuses, says why, the variable keeps its value.
    refused = plant.write(setpoint, 500)
    assert refused.status_code == 200, refused.text
    assert refused.json()["result"] == "rejected"
    assert "Setpoint accepts 0.0..200.0; got 500.0" in refused.json()["error"]
    assert opcua.read("Setpoint") == 99.5
    # Not writable in the edge's configuration: its birth says read-only, nothing is sent.
    read_only = plant.write(plant.path(DEVICE, "Order"), "PO-2")
    assert read_only.status_code == 422
    assert "read-only" in read_only.json()["detail"]
    assert opcua.read("Order") == "PO-1"
    assert [e.after["result"] for e in plant.audit()] == ["rejected", "written"]

    # The server gone: once the host has the DDEATH, a write is refused with 409, unsent.
    opcua.stop()
    wait_for(lambda: plant.stale(setpoint), "no DDEATH after the OPC UA server stopped")
    offline = plant.write(setpoint, 98.0)
    assert offline.status_code == 409
    assert f"device {DEVICE} of Plant1/{NODE} is offline" in offline.json()["detail"]
    assert len(plant.audit()) == 2


@pytest.fixture
def modbus_plant(tmp_path: Path, broker: MosquittoBroker) -> Iterator[tuple[Plant, ModbusServer]]:
    modbus = ModbusServer(free_port())
    modbus.start()
    plant = _plant(tmp_path, broker, modbus=[device_config(modbus.port).model_dump()])
    try:
        yield plant, modbus
    finally:
        plant.edge.stop()
        plant.server.stop()
        modbus.stop()


def test_an_api_write_changes_the_holding_register(
    modbus_plant: tuple[Plant, ModbusServer],
) -> None:
    plant, modbus = modbus_plant
    speed, temp = plant.path("Press1", "Speed"), plant.path("Press1", "Temp")
    wait_for(lambda: plant.live(speed) == 10, "the device's birth never reached the server")

    response = plant.write(speed, 999)
    assert response.status_code == 200, response.text
    assert (response.json()["result"], response.json()["value"]) == ("written", 999)
    # A scaled register: 30.0 = raw * 0.1 - 5.0, so the register holds 350.
    scaled = plant.write(temp, 30.0)
    assert scaled.status_code == 200, scaled.text
    assert scaled.json()["result"] == "written"
    assert scaled.json()["value"] == pytest.approx(30.0)
    check = ModbusTcpClient("127.0.0.1", port=modbus.port)
    assert check.connect()
    try:
        assert check.read_holding_registers(40, count=2, device_id=1).registers == [350, 999]
    finally:
        check.close()
    wait_for(lambda: 999 in plant.stored(speed), "the written value never reached history")
    assert plant.live(speed) == 999

    refused = plant.write(speed, 1001)  # max = 1000 in the edge's configuration
    assert refused.json()["result"] == "rejected"
    read_only = plant.write(plant.path("Press1", "I16"), 1)
    assert read_only.status_code == 422
    entries = plant.audit()
    assert [(e.entity_id, e.after["result"]) for e in entries] == [
        (speed, "rejected"),
        (temp, "written"),
        (speed, "written"),
    ]
    assert entries[2].before == {"value": 10}
