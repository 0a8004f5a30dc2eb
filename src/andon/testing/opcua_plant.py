"""The simulated plant served over OPC UA: a stand-in PLC for ``andon demo --source opcua``.

Every machine of the given simulators is an object under Objects, every metric a variable
(``Count/Outfeed`` is folder ``Count``, variable ``Outfeed``) with node id
``ns=2;s=<machine>.<metric>``. The simulators advance on the server's own loop, and each change
is written with the simulator's timestamp as the OPC UA source timestamp, so an edge reading
this server sees the same values at the same times as one running the simulator itself.
Variables the simulator accepts writes for (``Mode``, ``Setpoint/Speed``) are writable; a
client's write goes to the simulated machine first, and one it refuses is refused to the
client (``BadOutOfRange``) without changing the variable.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any

from asyncua import ua
from asyncua.common.callback import CallbackType, ServerItemCallback
from asyncua.common.utils import ServiceError
from asyncua.server.server import Server
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes

from andon.edge.sources.config import OPCUA_TYPES, OpcUaDeviceConfig
from andon.edge.sources.simulator import PlantSimulator
from andon.sparkplug.model import DataType

__all__ = ["NAMESPACE_URI", "OpcUaPlantServer"]

log = logging.getLogger(__name__)

NAMESPACE_URI = "urn:andon:demo-plant"

_VARIANTS: Mapping[DataType, ua.VariantType] = {
    DataType.BOOLEAN: ua.VariantType.Boolean,
    DataType.INT32: ua.VariantType.Int32,
    DataType.INT64: ua.VariantType.Int64,
    DataType.UINT32: ua.VariantType.UInt32,
    DataType.UINT64: ua.VariantType.UInt64,
    DataType.FLOAT: ua.VariantType.Float,
    DataType.DOUBLE: ua.VariantType.Double,
    DataType.STRING: ua.VariantType.String,
}
_CONFIG_TYPES = {datatype: name for name, datatype in OPCUA_TYPES.items()}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class OpcUaPlantServer:
    """asyncua's server on its own thread, serving ``simulators``' machines; ``start``/``stop``."""

    def __init__(
        self,
        simulators: Sequence[PlantSimulator],
        *,
        host: str = "127.0.0.1",
        port: int = 4840,
        update_interval_s: float = 0.25,
    ) -> None:
        self.endpoint = f"opc.tcp://{host}:{port}/andon/"
        self._update_interval_s = update_interval_s
        self._owner = {
            device: simulator for simulator in simulators for device in simulator.describe()
        }
        self._simulators = list(simulators)
        self._types = {
            (device, spec.name): spec.datatype
            for simulator in simulators
            for device, specs in simulator.describe().items()
            for spec in specs
        }
        self._nodes: dict[tuple[str, str], ua.NodeId] = {}
        self._writable: dict[ua.NodeId, tuple[str, str]] = {}
        #: Index of NAMESPACE_URI: the first one a fresh server registers.
        self._namespace = 2
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="andon-opcua-plant", daemon=True
        )
        self._server: Server | None = None
        self._updates: asyncio.Task[None] | None = None

    # -- what an edge needs to read it ---------------------------------------------------------

    def devices(self) -> list[str]:
        return list(self._owner)

    def device_config(self, device_id: str, **settings: Any) -> OpcUaDeviceConfig:
        """The edge's ``[[opcua]]`` table for one machine (writable where the simulator is)."""
        specs = self._owner[device_id].describe()[device_id]
        return OpcUaDeviceConfig.model_validate(
            {
                "device": device_id,
                "endpoint": self.endpoint,
                **settings,
                "tags": [
                    {
                        "name": spec.name,
                        "node": f"ns={self._namespace};s={device_id}.{spec.name}",
                        "type": _CONFIG_TYPES[spec.datatype],
                        "writable": spec.writable,
                        "unit": spec.unit,
                        "description": spec.description,
                    }
                    for spec in specs
                ],
            }
        )

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Serve; returns once the server listens and holds every machine's first values."""
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout)
        except Exception:
            self.stop()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(concurrent.futures.TimeoutError):
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    async def _start(self) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("Andon demo plant")
        # Like a PLC on a closed cell network: no security (the source's own tests cover it).
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        server.set_identity_tokens([ua.AnonymousIdentityToken])
        if await server.register_namespace(NAMESPACE_URI) != self._namespace:
            # device_config() names nodes by index: the first namespace a server adds is 2.
            raise RuntimeError(f"namespace {NAMESPACE_URI} did not get index {self._namespace}")
        for simulator in self._simulators:
            for device, specs in simulator.describe().items():
                machine = await server.nodes.objects.add_object(self._namespace, device)
                folders: dict[str, Any] = {}
                for spec in specs:
                    *path, leaf = spec.name.split("/")
                    parent = machine
                    for depth in range(len(path)):
                        key = "/".join(path[: depth + 1])
                        if key not in folders:
                            folders[key] = await parent.add_folder(self._namespace, path[depth])
                        parent = folders[key]
                    node = await parent.add_variable(
                        ua.NodeId(ua.String(f"{device}.{spec.name}"), ua.Int16(self._namespace)),
                        leaf,
                        ua.Variant(spec.initial_value, _VARIANTS[spec.datatype]),
                    )
                    if spec.writable:
                        await node.set_writable()
                        self._writable[node.nodeid] = (device, spec.name)
                    self._nodes[(device, spec.name)] = node.nodeid
        server.subscribe_server_callback(CallbackType.PreWrite, self._before_client_write)
        self._server = server
        await self._update()  # the first values are in place before anyone connects
        await server.start()
        self._updates = asyncio.create_task(self._update_forever())

    async def _shutdown(self) -> None:
        if self._updates is not None:
            self._updates.cancel()
            await asyncio.gather(self._updates, return_exceptions=True)
        if self._server is not None:
            await self._server.stop()
            self._server = None
        # The server leaves its session tasks behind after stop(): end them with the loop.
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- the plant ----------------------------------------------------------------------------

    async def _update(self) -> None:
        server = self._server
        assert server is not None
        for simulator in self._simulators:
            for change in simulator.poll(_now_ms()):
                key = (change.device_id, change.name)
                stamp = ua.DateTime.fromtimestamp(change.ts_ms / 1000, tz=UTC)
                variant = ua.Variant(change.value, _VARIANTS[self._types[key]])
                await server.write_attribute_value(
                    self._nodes[key], ua.DataValue(variant, SourceTimestamp=stamp)
                )

    async def _update_forever(self) -> None:
        while True:
            await asyncio.sleep(self._update_interval_s)
            try:
                await self._update()
            except Exception:  # keep serving: a bug here must not stop the plant
                log.exception("updating the simulated plant failed")

    async def _before_client_write(self, event: ServerItemCallback, dispatcher: Any) -> None:
        """A client writes: the simulated machine takes the value, or the write is refused."""
        del dispatcher
        if not event.is_external:
            return
        for item in event.request_params.NodesToWrite:
            owner = self._writable.get(item.NodeId)
            if owner is None or item.AttributeId != AttributeIds.Value:
                continue  # read-only variables are refused by the server's access levels
            device, name = owner
            value = item.Value.Value.Value if item.Value and item.Value.Value else None
            result = self._owner[device].write(device, name, value)
            if not result.accepted:
                log.warning("write %s/%s = %r refused: %s", device, name, value, result.reason)
                raise ServiceError(StatusCodes.BadOutOfRange)
