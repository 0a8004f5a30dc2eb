"""The edge's flush alone: how fast a spool backlog drains into a real broker, without a server.

A backlog of the benchmark plant (as ``andon bench replay`` writes it) is flushed by the real
``SpoolFlusher`` over MQTT QoS 1 into the embedded NATS broker, PUBACKs awaited, rounds of 500
records as the replay runs them. ``one_way_delay_ms`` puts an in-process proxy in front of the
broker that delays every chunk by that much in each direction, as a slow link would (the proxy
shares the process, so its own CPU is counted too).

Run it with ``python -m andon.bench.edge_flush [minutes] [rounds_in_flight] [one_way_delay_ms]``.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from andon.bench.brokers import bench_broker
from andon.bench.edge_client import connect_edge_client
from andon.bench.replay import prefill_spool
from andon.edge.flush import PublisherStats, SpoolFlusher
from andon.edge.poller import LastValueCache
from andon.edge.sources.simulator import PlantSimulator, benchmark_plant
from andon.edge.spool import StoreAndForwardSpool
from andon.sparkplug.edge_node import EdgeNodeSession
from andon.sparkplug.model import Metric
from andon.testing.clock import SystemClock

__all__ = ["edge_flush_rate"]

_MACHINES = 20
_TAGS_PER_MACHINE = 25


class _DelayProxy:
    """``127.0.0.1:port`` to the broker; every chunk is delivered ``delay_s`` later, in order."""

    def __init__(self, target_port: int, delay_s: float) -> None:
        self._target_port = target_port
        self._delay_s = delay_s
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._run, name="bench-delay-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the delay proxy did not start")

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stopped = asyncio.Event()
        server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stopped.wait()
        connections = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in connections:
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self._target_port
        )
        try:
            await asyncio.gather(
                self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
            )
        except (asyncio.CancelledError, ConnectionError):
            # Stopping (the connections are cancelled) or a side hung up: this connection ends.
            # Not re-raised: asyncio's server would log a cancelled connection as an error.
            upstream_writer.close()
            writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await chunks.get()
                await asyncio.sleep(max(0.0, due - self._loop.time()))
                if not data:
                    writer.close()
                    return
                writer.write(data)
                await writer.drain()

        delivery = asyncio.ensure_future(deliver())
        while data := await reader.read(65_536):
            chunks.put_nowait((self._loop.time() + self._delay_s, data))
        chunks.put_nowait((self._loop.time() + self._delay_s, b""))
        await delivery

    def stop(self) -> None:
        if self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(5)


def edge_flush_rate(
    minutes: int = 10, rounds_in_flight: int = 4, one_way_delay_ms: float = 0.0
) -> dict[str, float]:
    """Drain ``minutes`` of the 500-tag plant through the flush; values/s and CPU µs per value.

    Keys: ``values``, ``values_per_s``, ``cpu_us_per_value`` (this process, the MQTT client's
    thread included) and ``messages``.
    """
    with tempfile.TemporaryDirectory(prefix="andon-bench-edge-flush-") as tmp:
        work = Path(tmp)
        broker = bench_broker("nats", work / "broker")
        proxy = _DelayProxy(broker.port, one_way_delay_ms / 1000) if one_way_delay_ms else None
        try:
            now = time.time_ns() // 1_000_000
            count = prefill_spool(
                work / "spool.db", _MACHINES, _TAGS_PER_MACHINE, minutes * 60, now - 1000
            )
            return _drain(
                work / "spool.db",
                count,
                proxy.port if proxy else broker.port,
                now,
                rounds_in_flight,
            )
        finally:
            if proxy is not None:
                proxy.stop()
            broker.stop()


def _drain(path: Path, count: int, port: int, now: int, rounds_in_flight: int) -> dict[str, float]:
    specs = PlantSimulator(benchmark_plant(_MACHINES, _TAGS_PER_MACHINE), start_ms=now).describe()
    clock = SystemClock()
    lock = threading.Lock()
    session = EdgeNodeSession("Bench", "EdgeFlush", bd_seq=None)
    client = connect_edge_client(session, port, "andon-bench-edge-flush")
    with StoreAndForwardSpool(path, clock=clock, max_bytes=2**40) as spool:
        stats = PublisherStats()
        flusher = SpoolFlusher(
            session,
            lock,
            spool,
            LastValueCache([]),
            clock,
            stats,
            threading.Event(),
            batch_records=500,  # as ``andon bench replay`` runs the edge
            values_per_message=1000,
            flush_period_s=0.0,
            rounds_in_flight=rounds_in_flight,
            interleaved=False,
            rolling_window_s=30.0,
            ack_timeout_s=15.0,
        )
        flusher.attach(client)
        devices = {
            device: [Metric(s.name, s.initial_value, s.datatype, timestamp=now) for s in specs_]
            for device, specs_ in specs.items()
        }
        with lock:
            births = session.births([], devices, now)
        try:
            for birth in births:
                client.publish(birth.topic, birth.payload, birth.qos).wait(15)
            flusher.births_published(spool.last_id(), now)
            started, cpu_started = time.perf_counter(), time.process_time()
            while flusher.step():
                pass
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
        finally:
            client.stop()
        if spool.stats().records or stats.values_published_total != count:
            raise RuntimeError(f"the flush left {spool.stats().records} records in the spool")
    return {
        "values": float(count),
        "values_per_s": count / elapsed,
        "cpu_us_per_value": cpu / count * 1e6,
        "messages": float(client.stats().acked_total - len(births)),
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = [float(a) for a in (sys.argv[1:] if argv is None else argv)]
    minutes, rounds, delay = (args + [10, 4, 0.0][len(args) :])[:3]
    result = edge_flush_rate(int(minutes), int(rounds), delay)
    print(
        f"{result['values']:,.0f} values, {rounds:.0f} rounds in flight, one-way delay"
        f" {delay:g} ms: {result['values_per_s']:,.0f} values/s,"
        f" {result['cpu_us_per_value']:.2f} µs CPU per value, {result['messages']:,.0f} messages"
    )


if __name__ == "__main__":
    main()
