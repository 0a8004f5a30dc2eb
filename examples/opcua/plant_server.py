"""The demo plant served over OPC UA, so that `andon edge` reads it as real equipment would.

    .venv/bin/python examples/opcua/plant_server.py            # opc.tcp://127.0.0.1:4840/andon/

Every machine of the demo plant (the same simulator `andon demo` uses) is an object under
Objects; every metric a variable (``Count/Outfeed`` is folder ``Count``, variable ``Outfeed``)
with node id ``ns=2;s=<machine>.<metric>``, updated every 0.25 s with the simulator's own
timestamps as OPC UA source timestamps. ``Mode`` and ``Setpoint/Speed`` are writable; a write
from a client is passed on to the simulated machine, and one it refuses is refused to the client.
Ctrl-C stops it. (`andon demo --source opcua` runs the same server with the whole stack.)
"""

from __future__ import annotations

import argparse
import logging
import threading
import time

from andon.edge.sources.simulator import PlantConfig, PlantSimulator, demo_plant
from andon.testing.opcua_plant import OpcUaPlantServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=4840)
    parser.add_argument("--time-scale", type=float, default=10.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    base = demo_plant(time_scale=args.time_scale)
    simulator = PlantSimulator(
        PlantConfig(site=base.site, machines=base.machines, time_scale=args.time_scale),
        start_ms=time.time_ns() // 1_000_000,
    )
    plant = OpcUaPlantServer([simulator], port=args.port)
    plant.start()
    print(f"demo plant on {plant.endpoint} (Ctrl-C stops it)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        plant.stop()


if __name__ == "__main__":
    main()
