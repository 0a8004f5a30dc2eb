"""A Sparkplug load generator: edge nodes publishing DDATA as fast as the broker acknowledges.

Run as its own process (``python -m andon.bench.loadgen --port P --seconds S``) so that it does
not share a GIL with the server it loads. Every value has its own (tag, timestamp), so the
historian must end up holding exactly ``published_values`` rows. Prints one JSON line at the end.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from collections.abc import Sequence

from andon.bench.edge_client import connect_edge_client
from andon.bench.server_progress import committed_samples
from andon.mqtt.interface import PublishTicket
from andon.settings import ServerSettings
from andon.sparkplug.edge_node import EdgeNodeSession
from andon.sparkplug.model import DataType, Metric
from andon.sparkplug.sparkplug_b_pb2 import Payload as PayloadMessage

__all__ = ["generate_load", "main"]


def generate_load(
    port: int,
    *,
    group: str = "Bench",
    node: str = "Load1",
    devices: int = 20,
    metrics_per_device: int = 25,
    seconds: float = 60.0,
    window: int = 200,
    host: str = "127.0.0.1",
    server_http_port: int | None = None,
    max_ahead: int | None = None,
) -> dict[str, float]:
    """Publish for ``seconds``; returns published values, messages and the publish rate.

    With ``server_http_port``, publishing pauses while the server's historian has committed
    more than ``max_ahead`` values fewer than were published: the load runs at the rate the
    server absorbs, instead of piling a backlog into the broker that takes minutes to drain.
    """
    ahead = default_max_ahead() if max_ahead is None else max_ahead
    pacer = _ServerPacer(server_http_port, ahead) if server_http_port else None
    session = EdgeNodeSession(group, node, bd_seq=None)
    client = connect_edge_client(session, port, f"andon-loadgen-{group}-{node}", host)
    now = time.time_ns() // 1_000_000
    names = [f"Value{m:03d}" for m in range(metrics_per_device)]
    device_ids = [f"D{d:04d}" for d in range(devices)]
    births = session.births(
        [],
        {d: [Metric(n, 0.0, DataType.DOUBLE, timestamp=now) for n in names] for d in device_ids},
        now,
    )
    for publish in births:
        client.publish(publish.topic, publish.payload, 1, False).wait(15)
    # Data timestamps start after the births' and advance 1 ms per round of all devices, so
    # every (tag, timestamp) is unique and the history count is exact.
    base = now + 1
    # The first round goes through the edge session (aliases, seq); later rounds reuse its
    # payloads and change only what differs per round (timestamps, values, seq). The load
    # generator shares the machine with the server it measures: building 25 ``Metric`` objects
    # and encoding them anew per message cost it most of a core.
    templates: list[tuple[str, PayloadMessage]] = []
    for device in device_ids:
        metrics: Sequence[Metric] = [Metric(n, 0.0, timestamp=base) for n in names]
        publish = session.data(device, metrics, base)
        templates.append((publish.topic, PayloadMessage.FromString(publish.payload)))
    seq = templates[-1][1].seq
    pending: collections.deque[PublishTicket] = collections.deque()
    values = messages = 0
    started = time.monotonic()
    round_no = 0
    while time.monotonic() - started < seconds:
        ts = base + round_no
        value = float(round_no)
        for topic, template in templates:
            if round_no:  # round 0 is the session's own encoding
                seq = (seq + 1) % 256
                template.seq = seq
            template.timestamp = ts
            for metric in template.metrics:
                metric.timestamp = ts
                metric.double_value = value
            payload = template.SerializeToString()
            pending.append(client.publish(topic, payload, 1, False))
            values += metrics_per_device
            messages += 1
            if len(pending) >= window and not pending.popleft().wait(30):
                raise RuntimeError("the broker stopped acknowledging")
        round_no += 1
        if pacer is not None:
            pacer.wait_for_room(values)
    while pending:
        if not pending.popleft().wait(30):
            raise RuntimeError("the broker stopped acknowledging")
    elapsed = time.monotonic() - started
    death = session.death(time.time_ns() // 1_000_000)
    client.publish(death.topic, death.payload, death.qos, False).wait(10)
    client.stop()
    return {
        "published_values": values,
        "messages": messages,
        "seconds": elapsed,
        "publish_rate": values / elapsed,
        "tags": devices * metrics_per_device,
        "paused_s": 0.0 if pacer is None else round(pacer.paused_s, 1),
    }


def default_max_ahead() -> int:
    """How far the load may run ahead of the server's commits by default: what the server
    holds uncommitted (the historian's queue, which includes the batch being written) plus a
    batch more. A smaller lead starves the server: the writer commits up to a batch at a time,
    and a load waiting for that commit leaves the ingest thread idle while the batch is written,
    so decoding and inserting alternate instead of overlapping."""
    fields = ServerSettings.model_fields
    queue: int = fields["historian_queue_capacity"].default
    batch: int = fields["historian_max_batch"].default
    return queue + batch


class _ServerPacer:
    """Keeps the published values at most ``max_ahead`` ahead of the server's commits."""

    def __init__(self, http_port: int, max_ahead: int) -> None:
        self._port = http_port
        self._max_ahead = max_ahead
        self._committed = 0
        self._checked_at = 0.0
        self.paused_s = 0.0

    def wait_for_room(self, published: int) -> None:
        if published - self._committed <= self._max_ahead:
            return
        paused = time.monotonic()
        while True:
            now = time.monotonic()
            if now - self._checked_at >= 0.05:
                self._checked_at = now
                self._committed = committed_samples(self._port) or self._committed
                if published - self._committed <= self._max_ahead:
                    break
            time.sleep(0.02)  # the server drains; a bench process, not a test
        self.paused_s += time.monotonic() - paused


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--metrics", type=int, default=25)
    parser.add_argument("--node", default="Load1")
    parser.add_argument("--server-http-port", type=int, default=None)
    parser.add_argument("--max-ahead", type=int, default=None)
    args = parser.parse_args(argv)
    result = generate_load(
        args.port,
        node=args.node,
        devices=args.devices,
        metrics_per_device=args.metrics,
        seconds=args.seconds,
        server_http_port=args.server_http_port,
        max_ahead=args.max_ahead,
    )
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
