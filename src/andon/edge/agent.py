"""``EdgeAgent``: the root object of ``andon edge``. Reading the constructor shows the runtime."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from andon.edge.poller import LastValueCache, SourcePoller
from andon.edge.publisher import SpoolPublisher
from andon.edge.sources.base import Source, Startable, TagChange
from andon.edge.sources.simulator import PlantConfig, PlantSimulator, benchmark_plant, demo_plant
from andon.edge.spool import StoreAndForwardSpool
from andon.edge.status import status_path_for, write_status_file
from andon.mqtt.failover import FailoverBrokerClient
from andon.mqtt.interface import BrokerClient, Will
from andon.settings import EdgeSettings, SimulatorSettings
from andon.sparkplug.edge_node import EdgeNodeSession
from andon.testing.clock import Clock, SystemClock

__all__ = [
    "ChangeRecorder",
    "EdgeAgent",
    "build_equipment_sources",
    "build_simulator",
]

log = logging.getLogger(__name__)

_BD_SEQ_KEY = "bd_seq"
_FENCE_EPOCH_KEY = "fence_epoch"

#: Builds the broker client: (endpoint, message handler, listener, will factory) -> client.
BrokerClientFactory = Callable[..., BrokerClient]


def build_equipment_sources(settings: EdgeSettings, clock: Clock) -> list[Source]:
    """The OPC UA and Modbus TCP sources of the configured devices (none when none are).

    Imported here, not at the top: an edge with only the simulator never loads asyncua.
    """
    sources: list[Source] = []
    if settings.opcua:
        from andon.edge.sources.opcua import OpcUaSource

        sources.append(OpcUaSource(settings.opcua, clock=clock))
    if settings.modbus:
        from andon.edge.sources.modbus import ModbusSource

        sources.append(ModbusSource(settings.modbus, clock=clock))
    return sources


def build_simulator(
    settings: SimulatorSettings,
    start_ms: int,
    record_to: Callable[[TagChange], None] | None = None,
) -> PlantSimulator:
    if settings.machines > 0:
        base = benchmark_plant(settings.machines, settings.tags_per_machine, seed=settings.seed)
        config = PlantConfig(
            site=base.site,
            machines=base.machines,
            seed=settings.seed,
            time_scale=settings.time_scale,
        )
    else:
        plant = demo_plant(seed=settings.seed, time_scale=settings.time_scale)
        machines = tuple(
            m for m in plant.machines if settings.line is None or m.line == settings.line
        )
        if not machines:
            raise ValueError(f"simulator.line {settings.line!r} is not a line of the demo plant")
        config = PlantConfig(
            site=plant.site, machines=machines, seed=settings.seed, time_scale=settings.time_scale
        )
    return PlantSimulator(config, start_ms=start_ms, record_to=record_to)


class ChangeRecorder:
    """Writes every produced value as a JSON line: ``[device, name, ts_ms, value]``."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()

    def record(self, change: TagChange) -> None:
        value = change.value
        if isinstance(value, bytes):
            value = value.hex()
        with self._lock:
            self._file.write(
                json.dumps([change.device_id, change.name, change.ts_ms, value]) + "\n"
            )

    def close(self) -> None:
        with self._lock:
            self._file.close()


def _default_client_factory() -> BrokerClientFactory:
    from andon.mqtt.paho_client import PahoBrokerClient

    return PahoBrokerClient


class EdgeAgent:
    def __init__(
        self,
        settings: EdgeSettings,
        *,
        clock: Clock | None = None,
        sources: Sequence[Source] | None = None,
        client_factory: BrokerClientFactory | None = None,
        record_to: Callable[[TagChange], None] | None = None,
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.spool = StoreAndForwardSpool(
            settings.spool.path,
            clock=self.clock,
            max_bytes=int(settings.spool.max_mb * 1024 * 1024),
            max_age_s=settings.spool.max_age_s,
        )
        self._recorder = (
            ChangeRecorder(settings.simulator.record_path)
            if settings.simulator.record_path is not None and record_to is None
            else None
        )
        equipment = build_equipment_sources(settings, self.clock) if sources is None else []
        # The simulator stands in for equipment: it runs only when no real device is configured.
        simulated: list[Source] = (
            [
                build_simulator(
                    settings.simulator,
                    self.clock.now_ms(),
                    # Not ``record_to or ...``: a callable object may well be falsy (``__len__``).
                    record_to
                    if record_to is not None
                    else (self._recorder.record if self._recorder else None),
                )
            ]
            if sources is None and not equipment
            else []
        )
        self.sources: Sequence[Source] = sources or [*equipment, *simulated]
        self.last_values = LastValueCache(self.sources)
        self.session_lock = threading.Lock()
        self.session = EdgeNodeSession(
            settings.group_id,
            settings.edge_node_id,
            bd_seq=self.spool.get_int(_BD_SEQ_KEY),
            primary_host_id=settings.primary_host_id,
        )
        self.session.highest_fence_epoch = self.spool.get_int(_FENCE_EPOCH_KEY)
        self.publisher = SpoolPublisher(
            self.session,
            self.session_lock,
            self.spool,
            self.last_values,
            self.sources,
            self.clock,
            batch_records=settings.spool.flush_batch_records,
            values_per_message=settings.spool.flush_values_per_message,
            flush_period_s=settings.spool.flush_period_ms / 1000,
            rounds_in_flight=settings.spool.flush_rounds_in_flight,
            interleaved=settings.spool.flush_mode == "interleaved",
            rolling_window_s=settings.spool.rolling_window_s,
            persist_fence_epoch=lambda epoch: self.spool.set_int(_FENCE_EPOCH_KEY, epoch),
            next_server=lambda: self.client.next_server(),  # noqa: PLW0108 (built below)
        )
        self.poller = SourcePoller(
            self.sources,
            self.spool,
            self.last_values,
            self.clock,
            interval_s=settings.poll_interval_s,
            on_appended=self.publisher.wake,
            on_tick=self._write_status,
        )
        client_id = f"andon-edge-{settings.group_id}-{settings.edge_node_id}"
        self.client = FailoverBrokerClient(
            [m.endpoint(client_id) for m in (settings.mqtt, *settings.fallback_brokers)],
            on_message=self.publisher.on_message,
            listener=self.publisher,
            will_factory=self._next_will,
            client_factory=client_factory or _default_client_factory(),
        )
        self.publisher.attach(self.client)
        self.status_path = status_path_for(settings.spool.path)
        self._status_written_at = -1e9

    def _next_will(self) -> Will:
        """A new NDEATH Will for every CONNECT; the bdSeq is persisted before it is used."""
        with self.session_lock:
            will = self.session.next_will(self.clock.now_ms())
            self.spool.set_int(_BD_SEQ_KEY, self.session.bd_seq)
        return Will(topic=will.topic, payload=will.payload, qos=will.qos, retain=will.retain)

    def status(self) -> dict[str, object]:
        """What ``andon edge status`` shows beside the spool figures."""
        stats = self.publisher.stats
        return {
            "edge node": f"{self.settings.group_id}/{self.settings.edge_node_id}",
            "broker": self.client.endpoint.address,
            "connected": self.client.connected,
            "primary host": self.settings.primary_host_id or "-",
            "primary host online": self.session.primary_host_online,
            "born": stats.born,
            "flushing": stats.flushing,
            "values published": stats.values_published_total,
            "historical values published": stats.historical_values_total,
            "values re-sent (rolling buffer)": stats.resent_values_total,
            "updated": self.clock.now_ms(),
        }

    def _write_status(self) -> None:
        now = self.clock.monotonic()
        if now - self._status_written_at < 2.0:
            return
        self._status_written_at = now
        write_status_file(self.status_path, self.status())

    def start(self) -> None:
        for source in self.sources:
            if isinstance(source, Startable):
                source.start()  # their threads connect to the equipment in the background
        # The first poll fills the last-value cache, so the first birth is complete.
        self.poller.poll_once()
        self.publisher.start()
        self.poller.start()
        self.client.start()
        log.info("edge %s/%s started", self.settings.group_id, self.settings.edge_node_id)

    def stop(self, timeout: float = 10.0) -> None:
        """Intentional disconnect: NDEATH first (a DISCONNECT suppresses the Will).

        Values already polled are published first (up to ``timeout``) while the session is up,
        so a clean stop does not leave the last polls in the spool until the next start.
        """
        self.poller.stop(timeout)
        for source in self.sources:
            if isinstance(source, Startable):
                source.stop(timeout)
        self.publisher.drain(timeout)
        self.publisher.stop(timeout)
        if self.client.connected:
            with self.session_lock:
                death = self.session.death(self.clock.now_ms())
            self.client.publish(death.topic, death.payload, death.qos, death.retain).wait(timeout)
        self.client.stop(timeout)
        self._status_written_at = -1e9
        self._write_status()  # so `andon edge status` does not show a stopped edge connected
        self.spool.close()
        if self._recorder is not None:
            self._recorder.close()
        log.info("edge %s/%s stopped", self.settings.group_id, self.settings.edge_node_id)
