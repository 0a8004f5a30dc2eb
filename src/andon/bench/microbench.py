"""In-process micro-benchmarks of the server's ingest hot path (no broker, no database).

:func:`host_decode_rate` replays a store-and-forward backlog of the benchmark plant (the same
messages ``andon bench replay`` sends: DDATA with aliases, ``is_historical``, up to 40 spool
records per message) through the host session and the ingest's per-metric work, and reports
values/s per stage:

- ``decode_resolve``: ``HostApplicationSession.on_message`` (protobuf parse, seq, alias and
  datatype resolution into ``ReceivedMetric``);
- ``ingest``: ``SparkplugIngest`` turning those into historian ``Sample``\\ s and live updates
  (the historian sink discards them);
- ``host_and_ingest``: both, one after the other per message, as the ingest thread runs them.

Run it with ``python -m andon.bench.microbench [values]``.
"""

from __future__ import annotations

import gc
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from andon.bench.replay import prefill_spool
from andon.edge.sources.simulator import PlantSimulator, benchmark_plant
from andon.edge.spool import SpoolRecord, StoreAndForwardSpool
from andon.server.edge_registry import EdgeRegistry
from andon.server.ingest import SparkplugIngest
from andon.server.live_tags import LiveTagTable
from andon.sparkplug.actions import Publish
from andon.sparkplug.edge_node import EdgeNodeSession
from andon.sparkplug.host import HostAction, HostApplicationSession
from andon.sparkplug.model import Metric
from andon.storage.types import Sample
from andon.testing.clock import SystemClock
from andon.testing.host_link import BrokerlessHostLink

__all__ = ["host_decode_rate"]

_MACHINES = 20
_TAGS_PER_MACHINE = 25
# As ``andon bench replay`` runs the edge: 500 spool records (one device's values of one
# second each) per publish round, packed into messages of one device up to 1000 values.
_RECORDS_PER_ROUND = 500
_VALUES_PER_MESSAGE = 1000


class _DiscardSink:
    """A historian stand-in that accepts and drops everything."""

    def __init__(self) -> None:
        self.count = 0

    def submit(self, samples: Sequence[Sample], timeout: float | None = None) -> bool:
        self.count += len(samples)
        return True


def _messages(values: int) -> tuple[list[Publish], list[Publish], int]:
    """Births and the backlog's DDATA messages of the benchmark plant; and the value count."""
    tags = _MACHINES * _TAGS_PER_MACHINE
    seconds = max(1, -(-values // tags))
    now = time.time_ns() // 1_000_000
    with tempfile.TemporaryDirectory(prefix="andon-microbench-") as tmp:
        path = Path(tmp) / "spool.db"
        count = prefill_spool(path, _MACHINES, _TAGS_PER_MACHINE, seconds, now)
        records: list[SpoolRecord] = []
        with StoreAndForwardSpool(path, clock=SystemClock(), max_bytes=2**40) as spool:
            after = 0
            while batch := spool.peek(500, after_id=after):
                records.extend(batch)
                after = batch[-1].id
    specs = PlantSimulator(benchmark_plant(_MACHINES, _TAGS_PER_MACHINE), start_ms=now).describe()
    edge = EdgeNodeSession("Bench", "Edge", bd_seq=None)
    edge.next_will(now)
    edge.on_connected(now)
    births = edge.births(
        [],
        {
            device: [
                Metric(s.name, s.initial_value, s.datatype, timestamp=now) for s in device_specs
            ]
            for device, device_specs in specs.items()
        },
        now,
    )
    data: list[Publish] = []
    for first in range(0, len(records), _RECORDS_PER_ROUND):
        by_device: dict[str | None, list[list[Metric]]] = {}
        for record in records[first : first + _RECORDS_PER_ROUND]:
            messages = by_device.setdefault(record.device_id, [[]])
            if len(messages[-1]) + len(record.changes) > _VALUES_PER_MESSAGE:
                messages.append([])
            messages[-1].extend(Metric(c.name, c.value, timestamp=c.ts_ms) for c in record.changes)
        for device, messages in by_device.items():
            assert device is not None
            data.extend(edge.data(device, metrics, now, historical=True) for metrics in messages)
    return list(births), data, count


def _born_session(births: Sequence[Publish], now: int) -> HostApplicationSession:
    session = HostApplicationSession("bench")
    session.connect(now)
    for publish in births:
        session.on_message(publish.topic, publish.payload, now)
    return session


def _ingest(session: HostApplicationSession) -> tuple[SparkplugIngest, BrokerlessHostLink]:
    ingest = SparkplugIngest(LiveTagTable(), EdgeRegistry(), _DiscardSink())
    link = BrokerlessHostLink(session)
    ingest.attach([link])
    return ingest, link


def _timed_run(births: Sequence[Publish], data: Sequence[Publish], stage: str) -> tuple[float, int]:
    """Seconds one pass of ``stage`` takes, and the number of values it handled."""
    now = time.time_ns() // 1_000_000
    session = _born_session(births, now)
    ingest, link = _ingest(session)
    on_message = session.on_message
    carry_out = ingest._handle_actions  # the ingest thread's work on one message, minus the queue
    gc.collect()
    if stage == "decode_resolve":
        started = time.perf_counter()
        for publish in data:
            on_message(publish.topic, publish.payload, now)
        elapsed = time.perf_counter() - started
    elif stage == "ingest":
        decoded: list[list[HostAction]] = [
            on_message(publish.topic, publish.payload, now) for publish in data
        ]
        started = time.perf_counter()
        for actions in decoded:
            carry_out(link, actions)
        elapsed = time.perf_counter() - started
    else:
        started = time.perf_counter()
        for publish in data:
            carry_out(link, on_message(publish.topic, publish.payload, now))
        elapsed = time.perf_counter() - started
    handled = ingest.stats.values_total if stage != "decode_resolve" else -1
    return elapsed, handled


def host_decode_rate(values: int = 300_000, *, repeat: int = 3) -> dict[str, float]:
    """Values/s of the host decode path and the ingest's per-value work (best of ``repeat``).

    Keys: ``decode_resolve``, ``ingest``, ``host_and_ingest`` (values/s) and ``values`` (the
    backlog size actually used: ``values`` rounded up to whole seconds of the 500-tag plant).
    """
    births, data, count = _messages(values)
    result: dict[str, float] = {"values": float(count)}
    for stage in ("decode_resolve", "ingest", "host_and_ingest"):
        best = min(_timed_run(births, data, stage)[0] for _ in range(max(1, repeat)))
        result[stage] = count / best
    return result


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    values = int(args[0]) if args else 300_000
    for key, rate in host_decode_rate(values).items():
        unit = "" if key == "values" else " values/s"
        print(f"{key:>16}: {rate:>12,.0f}{unit}")


if __name__ == "__main__":
    main()
