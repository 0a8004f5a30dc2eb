"""The demo plant served over OPC UA, so that `andon edge` reads it as real equipment would.

    .venv/bin/python examples/opcua/plant_server.py            # opc.tcp://127.0.0.1:4840/andon/

Every machine of the demo plant (the same simulator `andon demo` uses) is an object under
Objects; every metric a variable (``Count/Outfeed`` is folder ``Count``, variable ``Outfeed``)
with node id ``ns=2;s=<machine>.<metric>``, updated every 0.5 s with the simulator's own
timestamps as OPC UA source timestamps. ``Mode`` and ``Setpoint/Speed`` are writable; a write
from a client is passed on to the simulated machine. Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

from asyncua import Server, ua

from andon.edge.sources.simulator import PlantConfig, PlantSimulator, demo_plant
from andon.sparkplug.model import DataType

VARIANTS = {
    DataType.BOOLEAN: ua.VariantType.Boolean,
    DataType.INT32: ua.VariantType.Int32,
    DataType.INT64: ua.VariantType.Int64,
    DataType.UINT32: ua.VariantType.UInt32,
    DataType.UINT64: ua.VariantType.UInt64,
    DataType.FLOAT: ua.VariantType.Float,
    DataType.DOUBLE: ua.VariantType.Double,
    DataType.STRING: ua.VariantType.String,
}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class WriteForwarder:
    """Hands client writes of writable variables to the simulated machine."""

    def __init__(self, simulator: PlantSimulator, owners: dict[str, tuple[str, str]]) -> None:
        self.simulator = simulator
        self.owners = owners

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        device, name = self.owners[node.nodeid.to_string()]
        result = self.simulator.write(device, name, val)
        if not result.accepted:
            logging.warning("write %s/%s = %r refused: %s", device, name, val, result.reason)


async def serve(port: int, time_scale: float) -> None:
    base = demo_plant(time_scale=time_scale)
    simulator = PlantSimulator(
        PlantConfig(site=base.site, machines=base.machines, time_scale=time_scale),
        start_ms=_now_ms(),
    )
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/andon/")
    server.set_server_name("Andon demo plant")
    idx = await server.register_namespace("urn:andon:demo-plant")
    variables: dict[tuple[str, str], Any] = {}
    writable: dict[str, tuple[str, str]] = {}
    for device, specs in simulator.describe().items():
        machine = await server.nodes.objects.add_object(idx, device)
        folders: dict[str, Any] = {}
        for spec in specs:
            *path, leaf = spec.name.split("/")
            parent = machine
            for depth in range(len(path)):
                key = "/".join(path[: depth + 1])
                if key not in folders:
                    folders[key] = await parent.add_folder(idx, path[depth])
                parent = folders[key]
            node = await parent.add_variable(
                ua.NodeId(f"{device}.{spec.name}", idx),
                leaf,
                ua.Variant(spec.initial_value, VARIANTS[spec.datatype]),
            )
            if spec.writable:
                await node.set_writable()
                writable[node.nodeid.to_string()] = (device, spec.name)
            variables[(device, spec.name)] = node
    async with server:
        subscription = await server.create_subscription(200, WriteForwarder(simulator, writable))
        await subscription.subscribe_data_change([variables[owner] for owner in writable.values()])
        print(f"demo plant on opc.tcp://127.0.0.1:{port}/andon/ (Ctrl-C stops it)", flush=True)
        while True:
            for change in simulator.poll(_now_ms()):
                spec_type = VARIANTS[
                    next(
                        s.datatype
                        for s in simulator.describe()[change.device_id]
                        if s.name == change.name
                    )
                ]
                stamp = datetime.fromtimestamp(change.ts_ms / 1000, tz=UTC)
                await variables[(change.device_id, change.name)].write_value(
                    ua.DataValue(ua.Variant(change.value, spec_type), SourceTimestamp=stamp)
                )
            await asyncio.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=4840)
    parser.add_argument("--time-scale", type=float, default=10.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.time_scale))


if __name__ == "__main__":
    main()
