"""A paced Sparkplug plant: machines whose 25 tags all change once a second, at a fixed rate.

Where ``loadgen`` publishes as fast as the broker acknowledges (a throughput ceiling), this
publishes a plant at its natural rate (``hz`` rounds a second, each machine one DDATA per round,
spread evenly over the round) so that the server's CPU share under a realistic load can be
measured. Each machine carries the tags the MES derives from -- a PLC state code that changes now
and then, infeed/outfeed/waste counters -- plus analogue values; every tag changes every round
(the worst case for report by exception). Run as its own process
(``python -m andon.bench.paced_load --port P --node N --machines M --seconds S``); prints one JSON
line at the end.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from collections.abc import Sequence

from andon.bench.edge_client import connect_edge_client
from andon.mqtt.interface import PublishTicket
from andon.sparkplug.edge_node import EdgeNodeSession
from andon.sparkplug.model import DataType, Metric

__all__ = ["STATE_CYCLE", "analogue_names", "machine_id", "main", "publish_paced_plant"]

#: PLC state codes of the simulator's state map, visited in turn: mostly running, with stops.
STATE_CYCLE = (1, 1, 1, 1, 3, 1, 1, 1, 1, 5, 1, 1, 4, 1, 1, 1)
#: Rounds a machine stays in one state (staggered per machine so changes are spread out).
STATE_ROUNDS = 45


def machine_id(index: int) -> str:
    return f"M{index:04d}"


def analogue_names(tags_per_machine: int) -> list[str]:
    """The analogue tags besides the five the MES reads (state, mode and three counters)."""
    return [f"Value{i:03d}" for i in range(max(0, tags_per_machine - 5))]


def _machine_metrics(index: int, round_no: int, names: Sequence[str], ts: int) -> list[Metric]:
    state = STATE_CYCLE[((round_no + index * 7) // STATE_ROUNDS) % len(STATE_CYCLE)]
    outfeed = round_no * 2 + index
    waste = round_no // 50
    metrics = [
        Metric("State/Code", state, DataType.INT32, timestamp=ts),
        Metric("Mode", "production", DataType.STRING, timestamp=ts),
        Metric("Count/Infeed", outfeed + waste, DataType.UINT32, timestamp=ts),
        Metric("Count/Outfeed", outfeed, DataType.UINT32, timestamp=ts),
        Metric("Count/Waste", waste, DataType.UINT32, timestamp=ts),
    ]
    metrics.extend(
        Metric(name, float(round_no + i) * 0.5 + index, DataType.DOUBLE, timestamp=ts)
        for i, name in enumerate(names)
    )
    return metrics


def publish_paced_plant(
    port: int,
    *,
    group: str = "Scale",
    node: str = "Edge1",
    first_machine: int = 0,
    machines: int = 500,
    tags_per_machine: int = 25,
    seconds: float = 60.0,
    hz: float = 1.0,
    window: int = 500,
    host: str = "127.0.0.1",
) -> dict[str, float]:
    """Publish for ``seconds``; returns the values and messages sent and how late the pacing ran."""
    session = EdgeNodeSession(group, node, bd_seq=None)
    client = connect_edge_client(session, port, f"andon-paced-{group}-{node}", host)
    names = analogue_names(tags_per_machine)
    indexes = range(first_machine, first_machine + machines)
    period_ms = 1000.0 / hz
    now = time.time_ns() // 1_000_000
    births = session.births(
        [], {machine_id(i): _machine_metrics(i, 0, names, now) for i in indexes}, now
    )
    for publish in births:
        client.publish(publish.topic, publish.payload, 1, False).wait(15)
    pending: collections.deque[PublishTicket] = collections.deque()
    values = messages = 0
    worst_lag_s = 0.0
    started = time.monotonic()
    base_ms = now + round(period_ms)
    rounds = max(1, int(seconds * hz))
    for round_no in range(1, rounds + 1):
        ts = base_ms + round((round_no - 1) * period_ms)
        round_start = started + (round_no - 1) / hz
        for offset, index in enumerate(indexes):
            due = round_start + offset / (machines * hz)
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing the publisher itself, not waiting for a result
            else:
                worst_lag_s = max(worst_lag_s, -delay)
            publish = session.data(
                machine_id(index), _machine_metrics(index, round_no, names, ts), ts
            )
            pending.append(client.publish(publish.topic, publish.payload, 1, False))
            values += tags_per_machine
            messages += 1
            while len(pending) >= window or (pending and pending[0].acknowledged):
                if not pending.popleft().wait(30):
                    raise RuntimeError("the broker stopped acknowledging")
    while pending:
        if not pending.popleft().wait(30):
            raise RuntimeError("the broker stopped acknowledging")
    elapsed = time.monotonic() - started
    death = session.death(time.time_ns() // 1_000_000)
    client.publish(death.topic, death.payload, death.qos, False).wait(10)
    client.stop()
    return {
        "published_values": values,
        "birth_values": machines * tags_per_machine,
        "messages": messages,
        "seconds": elapsed,
        "rate": values / elapsed,
        "worst_lag_s": worst_lag_s,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--group", default="Scale")
    parser.add_argument("--node", default="Edge1")
    parser.add_argument("--first-machine", type=int, default=0)
    parser.add_argument("--machines", type=int, default=500)
    parser.add_argument("--tags", type=int, default=25)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--hz", type=float, default=1.0)
    args = parser.parse_args(argv)
    result = publish_paced_plant(
        args.port,
        group=args.group,
        node=args.node,
        first_machine=args.first_machine,
        machines=args.machines,
        tags_per_machine=args.tags,
        seconds=args.seconds,
        hz=args.hz,
    )
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
