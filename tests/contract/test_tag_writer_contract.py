"""Writes to equipment: one suite for the server's ``TagWriter`` and ``InMemoryTagWriter``.

The real writer runs in a ``MesServer`` with an ``EdgeAgent`` on the in-memory broker; the
edge's source is the plant simulator (writable ``Mode`` and ``Setpoint/Speed``, every other
metric read-only). The in-memory writer has the same simulator as its equipment. Both must
refuse the same writes with the same errors before sending anything, and answer the same way
once the edge has the command: written (the echo), rejected (the edge's reason) or, for the
fence, a stale epoch refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import pytest

from andon.edge.agent import EdgeAgent
from andon.edge.sources.base import WriteResult
from andon.edge.sources.simulator import PlantConfig, PlantSimulator, demo_plant
from andon.mqtt.interface import MqttEndpoint
from andon.server.mes_server import MesServer
from andon.server.tag_writes import (
    BeforeSend,
    EpochProvider,
    NoBrokerOnlineError,
    TagNotWritableError,
    TagOfflineError,
    TagValueError,
    TagWriteOutcome,
    UnknownTagError,
)
from andon.settings import EdgeSettings, ServerSettings, SpoolSettings
from andon.sparkplug.model import MetricValue
from andon.testing.memory_broker import InMemoryBroker, InMemoryBrokerClient
from andon.testing.processes import wait_until
from andon.testing.tag_writes import InMemoryTagWriter

GROUP, NODE, DEVICE = "Plant", "Edge1", "Filler1"
SETPOINT = f"{GROUP}/{NODE}/{DEVICE}/Setpoint/Speed"
MODE = f"{GROUP}/{NODE}/{DEVICE}/Mode"
STATE_CODE = f"{GROUP}/{NODE}/{DEVICE}/State/Code"


class WriteTag(Protocol):
    """``MesServer.write_tag`` and ``InMemoryTagWriter.write``."""

    def __call__(
        self,
        path: str,
        value: object,
        *,
        epoch_provider: EpochProvider | None = None,
        before_send: BeforeSend | None = None,
    ) -> TagWriteOutcome: ...


class SimulatedLine(PlantSimulator):
    """Line 1 of the demo plant; a device can be made to stop answering (DDEATH)."""

    def __init__(self) -> None:
        plant = demo_plant(time_scale=1.0)
        machines = tuple(m for m in plant.machines if m.line == "Line1")
        super().__init__(
            PlantConfig(site=plant.site, machines=machines, time_scale=1.0),
            start_ms=time.time_ns() // 1_000_000,
        )
        self.online = dict.fromkeys(self.describe(), True)
        #: Values whose write the equipment leaves unanswered (an OPC UA server that times out).
        self.unanswered: set[object] = set()

    def device_online(self) -> Mapping[str, bool]:
        return dict(self.online)

    def write(self, device_id: str, name: str, value: MetricValue) -> WriteResult:
        if value in self.unanswered:
            return WriteResult.unknown("the device did not answer in time")
        return super().write(device_id, name, value)


class Harness:
    """A writer and the levers that take its equipment, node or broker away."""

    def __init__(
        self,
        write_tag: WriteTag,
        commands: Callable[[], int],
        device_offline: Callable[[str], None],
        node_offline: Callable[[], None],
        broker_offline: Callable[[], None],
        source: SimulatedLine,
    ) -> None:
        self.source = source
        self.write_tag = write_tag
        self.commands = commands
        self.device_offline = device_offline
        self.node_offline = node_offline
        self.broker_offline = broker_offline

    def write(self, path: str, value: object, epoch: int | None = None) -> TagWriteOutcome:
        provider = None if epoch is None else (lambda: epoch)
        return self.write_tag(path, value, epoch_provider=provider)


def _memory(tmp_path: Path) -> Iterator[Harness]:
    source = SimulatedLine()
    writer = InMemoryTagWriter(source, group_id=GROUP, edge_node_id=NODE)

    def device_offline(device: str) -> None:
        writer.offline_devices.add(device)

    def node_offline() -> None:
        writer.node_online = False

    def broker_offline() -> None:
        writer.broker_online = False

    yield Harness(
        writer.write,
        lambda: len(writer.sent),
        device_offline,
        node_offline,
        broker_offline,
        source,
    )


def _server(tmp_path: Path) -> Iterator[Harness]:
    broker = InMemoryBroker()

    def factory(endpoint: MqttEndpoint, **kwargs: Any) -> InMemoryBrokerClient:
        return broker.client(endpoint.client_id, **kwargs)

    server = MesServer(
        ServerSettings(
            host_id="writes",
            database_url=f"sqlite:///{tmp_path / 'andon.db'}",
            historian_spool_path=tmp_path / "historian-spool.db",
            tag_write_timeout_s=10.0,
        ),
        client_factory=factory,
        serve_http=False,
    )
    source = SimulatedLine()
    edge = EdgeAgent(
        EdgeSettings(
            group_id=GROUP,
            edge_node_id=NODE,
            poll_interval_s=0.02,
            spool=SpoolSettings(path=tmp_path / "edge-spool.db"),
        ),
        sources=[source],
        client_factory=factory,
    )
    server.start()
    edge.start()

    def target_online(device: str = DEVICE) -> bool:
        with server.host.session_lock:
            target = server.session.command_target(GROUP, NODE, device, "Mode")
        return target is not None and target.node_online and target.device_online

    def device_offline(device: str) -> None:
        source.online[device] = False
        wait_until(lambda: not target_online(device), 10.0, f"{device} never went offline")

    stopped: list[EdgeAgent] = []

    def node_online() -> bool:
        with server.host.session_lock:
            target = server.session.command_target(GROUP, NODE, "Capper1", "Setpoint/Speed")
        return target is not None and target.node_online

    def node_offline() -> None:
        assert node_online()
        edge.stop()
        stopped.append(edge)
        # The node itself: the device the test took offline first is offline already.
        wait_until(lambda: not node_online(), 10.0, "the edge node never went offline")

    def broker_offline() -> None:
        broker.set_online(False)

    def commands() -> int:
        stats = edge.publisher.stats
        return stats.commands_accepted_total + stats.commands_rejected_total

    try:
        wait_until(target_online, 10.0, "the edge's births never reached the server")
        wait_until(lambda: server.live_tags.get(SETPOINT), 10.0, "no live Setpoint/Speed")
        yield Harness(
            server.write_tag, commands, device_offline, node_offline, broker_offline, source
        )
    finally:
        if not stopped:
            edge.stop()
        server.stop()


@pytest.fixture(params=["memory", "server"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    factory = _memory if request.param == "memory" else _server
    yield from factory(tmp_path)


def test_a_write_is_sent_and_its_echo_confirms_it(harness: Harness) -> None:
    outcome = harness.write(SETPOINT, 55.5)
    assert (outcome.result, outcome.requested, outcome.value) == ("written", 55.5, 55.5)
    assert outcome.error is None
    assert outcome.previous not in (None, 55.5)
    again = harness.write(SETPOINT, 60)  # an integer for a Double: sent as 60.0
    assert (again.result, again.requested, again.previous) == ("written", 60.0, 55.5)
    mode = harness.write(MODE, "Maintenance")
    assert (mode.result, mode.value) == ("written", "Maintenance")
    assert harness.commands() == 3


def test_what_the_edge_refuses_is_rejected_with_its_reason(harness: Harness) -> None:
    before = harness.write(SETPOINT, 50.0)
    assert before.result == "written"
    too_fast = harness.write(SETPOINT, 1000.0)
    assert too_fast.result == "rejected"
    assert too_fast.error is not None
    assert too_fast.error.startswith("Filler1/Setpoint/Speed: ")
    assert "1000" in too_fast.error
    assert too_fast.value == 50.0  # unchanged
    party = harness.write(MODE, "Party")
    assert party.result == "rejected"
    assert party.error is not None
    assert "Mode must be one of" in party.error


def test_before_send_runs_after_the_checks_and_its_failure_sends_nothing(
    harness: Harness,
) -> None:
    seen: list[tuple[object, object, int | None]] = []

    def audit_down(previous: object, requested: object, epoch: int | None) -> None:
        seen.append((previous, requested, epoch))
        raise RuntimeError("the audit trail is unavailable")

    with pytest.raises(RuntimeError, match="audit trail"):
        harness.write_tag(SETPOINT, 42, before_send=audit_down)
    assert harness.commands() == 0  # nothing reached the edge
    assert [(requested, epoch) for _, requested, epoch in seen] == [(42.0, None)]
    with pytest.raises(TagNotWritableError):  # refused before sending: never asked
        harness.write_tag(STATE_CODE, 3, before_send=audit_down)
    assert len(seen) == 1

    def audit(previous: object, requested: object, epoch: int | None) -> None:
        seen.append((previous, requested, epoch))

    written = harness.write_tag(SETPOINT, 42, before_send=audit)
    assert written.result == "written"
    assert seen[-1] == (written.previous, 42.0, None)
    assert harness.commands() == 1


def test_an_edge_that_cannot_tell_is_a_timeout_not_a_rejection(harness: Harness) -> None:
    harness.source.unanswered.add(33.0)
    outcome = harness.write(SETPOINT, 33.0)
    assert outcome.result == "timeout"
    assert outcome.error is not None
    assert outcome.error.startswith("Filler1/Setpoint/Speed: outcome unknown: ")


@pytest.mark.parametrize(
    ("path", "error"),
    [
        (STATE_CODE, "read-only"),
        (f"{GROUP}/{NODE}/Andon/Command/LastError", "metric of the edge node"),
    ],
)
def test_read_only_tags_are_refused_before_sending(harness: Harness, path: str, error: str) -> None:
    with pytest.raises(TagNotWritableError, match=error):
        harness.write(path, 3)
    assert harness.commands() == 0


@pytest.mark.parametrize(
    ("path", "value", "error"),
    [
        (SETPOINT, "fast", "DOUBLE needs a number"),
        (SETPOINT, True, "DOUBLE needs a number"),
        (SETPOINT, None, "null"),
        (SETPOINT, [1.0], "DOUBLE needs a number"),
        (MODE, 5, "STRING needs a string"),
    ],
)
def test_values_of_the_wrong_type_are_refused_before_sending(
    harness: Harness, path: str, value: object, error: str
) -> None:
    with pytest.raises(TagValueError, match=error):
        harness.write(path, value)
    assert harness.commands() == 0


@pytest.mark.parametrize(
    "path",
    [
        f"{GROUP}/{NODE}/{DEVICE}/Nope",
        f"Other/{NODE}/{DEVICE}/Mode",
        f"{GROUP}/{NODE}/Ghost/Mode",
        f"{GROUP}/{NODE}",
        "",
    ],
)
def test_unknown_tags_are_refused(harness: Harness, path: str) -> None:
    with pytest.raises(UnknownTagError, match="no tag"):
        harness.write(path, 1.0)


def test_an_offline_device_or_node_is_refused(harness: Harness) -> None:
    harness.device_offline(DEVICE)
    with pytest.raises(TagOfflineError, match=f"device {DEVICE} of {GROUP}/{NODE} is offline"):
        harness.write(SETPOINT, 40.0)
    capper = f"{GROUP}/{NODE}/Capper1/Setpoint/Speed"
    assert harness.write(capper, 40.0).result == "written"  # the other devices still answer
    harness.node_offline()
    with pytest.raises(TagOfflineError, match=f"edge node {GROUP}/{NODE} is offline"):
        harness.write(capper, 41.0)
    assert harness.commands() == 1


def test_without_a_broker_nothing_can_be_sent(harness: Harness) -> None:
    harness.broker_offline()
    with pytest.raises(NoBrokerOnlineError, match="no broker connection"):
        harness.write(SETPOINT, 40.0)


def test_commands_carry_the_fence_epoch_and_a_stale_one_is_rejected(harness: Harness) -> None:
    current = harness.write(SETPOINT, 45.0, epoch=7)
    assert (current.result, current.fence_epoch) == ("written", 7)
    stale = harness.write(SETPOINT, 46.0, epoch=3)
    assert (stale.result, stale.fence_epoch) == ("rejected", 3)
    assert stale.error is not None
    assert "fence epoch 3 is below the highest seen 7" in stale.error
    assert stale.value == 45.0
    newer = harness.write(SETPOINT, 47.0, epoch=8)
    assert newer.result == "written"
    unfenced = harness.write(SETPOINT, 48.0)  # no cluster: no epoch, nothing to compare
    assert (unfenced.result, unfenced.fence_epoch) == ("written", None)
