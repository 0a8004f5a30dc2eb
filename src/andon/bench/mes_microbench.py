"""In-process micro-benchmarks of the MES side of ``andon bench scale`` (no broker).

- ``derive``: ``MesService.offer`` per message of the scale plant (a machine's five bound tags:
  state code, mode, three counters; the derived writes gathered, not written), CPU µs;
- ``derive_batched``: the same with ten messages per call, as the ingest thread hands them on
  at 1,000 messages a second and its ``ingest_gather_ms`` of 10 ms;
- ``derive_running``: the same for machines that have been running for ``running_s`` without a
  state change (their open interval is that long), the last minute's messages;
- ``uns_document``: the UNS documents of every asset at ``into_hour_s`` into the running hour,
  built as the publisher builds them (the derived records in SQLite), CPU µs per document;
- ``derived_write``: the MES transaction of half a second of the 1,000-asset plant (what
  ``mes_write_delay_s`` gathers: 500 counts, 2,000 rollup increments), CPU ms, on SQLite;
- ``retained_bytes_per_sample``: the memory (tracemalloc) the domain builders of an asset -- an
  interval builder and three counter series -- hold per sample they keep for late data (state
  code, mode and three counters a second, the state changing every few minutes, each sample
  with its own timestamp object as decoded): what the week of ``mes_horizon_hours`` costs;
- ``mes_retained_bytes_per_asset_second``: the same for the whole ``MesService`` per asset and
  second of the scale plant (its builders and what it keeps beside them).

Run it with ``python -m andon.bench.mes_microbench``.
"""

from __future__ import annotations

import gc
import json
import sys
import tempfile
import time
import tomllib
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from andon.bench.paced_load import STATE_CYCLE, STATE_ROUNDS, machine_id
from andon.bench.scale import GROUP, scale_plant_toml
from andon.domain import (
    PRODUCTION,
    AssetPath,
    CounterSample,
    CountSeries,
    IntervalBuilder,
    ModeSample,
    ProducedCount,
    StateSample,
    TimeAccount,
)
from andon.server.mes_queries import MesQueries
from andon.server.mes_service import MesService
from andon.server.plant_file import parse_plant
from andon.server.uns import UnsPublisher
from andon.storage.historian_writer import HistorianWriter
from andon.storage.mes import MesChanges, MesRepository, MesWrite
from andon.storage.mes_runs import RunRepository
from andon.storage.migrate import upgrade_database
from andon.storage.store import open_historian_store
from andon.storage.types import Sample

__all__ = ["mes_microbench"]

#: 2026-03-02 10:00 UTC, a Monday in the scale plant's day shift.
_T0 = 1_772_445_600_000


class _GatheringSink:
    """The historian writer's part in derivation: merges what it is given, writes nothing."""

    def __init__(self) -> None:
        self.pending: MesWrite | None = None

    def submit_derived(self, write: MesWrite, timeout: float | None = None) -> bool:
        if self.pending is None:
            self.pending = write
        else:
            self.pending.merge(write)
        return True

    def flush(self, timeout: float | None = None) -> bool:
        return True


def _message(assets: int, index: int, round_no: int, ts: int, *, steady: bool) -> list[Sample]:
    prefix = f"{GROUP}/Edge{index * 2 // assets + 1}/{machine_id(index)}"
    state = 1 if steady else STATE_CYCLE[((round_no + index * 7) // STATE_ROUNDS) % 16]
    outfeed, waste = round_no * 2 + index, round_no // 50
    values: list[tuple[str, int | str]] = [
        ("State/Code", state), ("Mode", "production"), ("Count/Infeed", outfeed + waste),
        ("Count/Outfeed", outfeed), ("Count/Waste", waste),
    ]  # fmt: skip
    return [Sample(f"{prefix}/{name}", ts, value) for name, value in values]


class _DiscardingSink:
    """Accepts the derived writes and keeps nothing (for the memory figures)."""

    def submit_derived(self, write: MesWrite, timeout: float | None = None) -> bool:
        return True

    def flush(self, timeout: float | None = None) -> bool:
        return True


def _service(url: str, assets: int, sink: Any, clock: dict[str, int]) -> MesService:
    upgrade_database(url)
    plant = parse_plant(tomllib.loads(scale_plant_toml(assets, 2)), "scale.toml")
    repository = MesRepository(url)
    service = MesService(
        plant, repository, RunRepository(repository.engine), sink, clock=lambda: clock["now"]
    )
    service.load()
    return service


def _derive(work: Path, assets: int, seconds: int, *, steady: bool, per_call: int = 1) -> float:
    """CPU µs per message over the last minute (at most) of ``seconds`` of the plant, offered
    ``per_call`` messages at a time."""
    clock = {"now": _T0}
    name = f"derive-{steady}-{per_call}.db"
    service = _service(f"sqlite:///{work / name}", assets, _GatheringSink(), clock)
    measured = 0.0
    messages = 0
    gc.collect()
    for round_no in range(seconds):
        ts = _T0 + round_no * 1000
        clock["now"] = ts
        messages_of_round = [
            _message(assets, i, round_no, ts, steady=steady) for i in range(assets)
        ]
        calls = [
            [sample for message in messages_of_round[i : i + per_call] for sample in message]
            for i in range(0, assets, per_call)
        ]
        started = time.process_time()
        for samples in calls:
            service.offer(samples)
        if round_no >= max(1, seconds - 60):
            measured += time.process_time() - started
            messages += assets
    service.repository.close()
    return measured / messages * 1e6


def _uns_document(work: Path, assets: int, into_hour_s: int) -> tuple[float, int]:
    url = f"sqlite:///{work / 'uns.db'}"
    clock = {"now": _T0}
    store = open_historian_store(url)
    upgrade_database(url)
    writer = HistorianWriter(store)
    writer.start()
    service = _service(url, assets, writer, clock)
    for round_no in range(into_hour_s):
        ts = _T0 + round_no * 1000
        clock["now"] = ts + 500
        for i in range(assets):
            service.offer(_message(assets, i, round_no, ts, steady=False))
    writer.flush(600.0)
    published = SimpleNamespace(done=True, acknowledged=True)
    client = SimpleNamespace(publish=lambda *args, **kwargs: published)
    host = SimpleNamespace(online=True, client=client)
    queries = MesQueries(service, clock=lambda: clock["now"])
    uns = UnsPublisher(
        queries, [host],  # type: ignore[list-item]
        flush=writer.flush, monotonic=lambda: clock["now"] / 1000,
    )  # fmt: skip
    elapsed, documents = 0.0, 0
    for _ in range(2):  # the first builds the statements and finds each asset's leaves
        uns.republish_all()  # every asset, as after a reconnect: one batch
        clock["now"] += 10_000  # past their interval
        gc.collect()
        before = uns.published_total
        started = time.process_time()
        uns.pump()
        elapsed = time.process_time() - started
        documents = uns.published_total - before
    writer.stop(60.0)
    store.close()
    service.repository.close()
    return elapsed / assets * 1e6, documents


def _derived_write(work: Path, assets: int = 1000) -> float:
    url = f"sqlite:///{work / 'write.db'}"
    upgrade_database(url)
    repository = MesRepository(url)
    paths = [AssetPath.parse(f"S/A/L/{machine_id(i)}") for i in range(assets)]
    windows = []
    for k in range(20):
        changes = MesChanges()
        for j in range(assets // 2):
            asset = paths[(k * assets // 2 + j) % assets]
            ts = _T0 + k * 500 + j
            changes.counts[(str(asset), ts)] = ProducedCount(asset, ts, 2, 0)
        for asset in paths:
            for kind, start in (("hour", _T0), ("shift", _T0 - 4 * 3_600_000)):
                part = TimeAccount(running_ms=500, total_count=2, unrated_count=2)
                changes.add_account(str(asset), kind, start, start + 3_600_000, "", part)
        windows.append(changes)
    gc.collect()
    started = time.process_time()
    for changes in windows:
        repository.write_changes(changes)
    elapsed = time.process_time() - started
    repository.close()
    return elapsed / len(windows) * 1e3


def _traced_growth(warm_up: Callable[[], None], measured: Callable[[], None]) -> int:
    """Bytes allocated by ``measured()`` and still held after it (tracemalloc), ``warm_up()``
    run first untraced (what a builder allocates once is not per sample)."""
    warm_up()
    gc.collect()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        measured()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        if not was_tracing:
            tracemalloc.stop()


def _retained_bytes_per_sample(assets: int, seconds: int) -> float:
    plant = parse_plant(tomllib.loads(scale_plant_toml(assets, 2)), "scale.toml")
    paths = sorted(plant.bound_assets, key=str)
    builders = [IntervalBuilder(path, plant.state_maps[path]) for path in paths]
    counters = [[CountSeries(2**32 - 1) for _ in range(3)] for _ in paths]

    def run(first: int, last: int) -> None:
        for round_no in range(first, last):
            offset = round_no * 1000
            for index, builder in enumerate(builders):
                # ``_T0 + offset``: a new int object a sample, as decoded timestamps are.
                code = STATE_CYCLE[((round_no + index * 7) // STATE_ROUNDS) % len(STATE_CYCLE)]
                builder.apply(
                    [StateSample(_T0 + offset, code)], [ModeSample(_T0 + offset, PRODUCTION)]
                )
                outfeed, waste = round_no * 2 + index + 1000, round_no // 50
                values = (outfeed + waste, outfeed, waste)
                for series, value in zip(counters[index], values, strict=True):
                    series.apply([CounterSample(_T0 + offset, value)])

    warm_up_s = min(60, seconds)
    held = _traced_growth(lambda: run(0, warm_up_s), lambda: run(warm_up_s, warm_up_s + seconds))
    return held / (len(paths) * seconds * 5)


def _mes_retained_bytes_per_asset_second(work: Path, assets: int, seconds: int) -> float:
    clock = {"now": _T0}
    service = _service(f"sqlite:///{work / 'memory.db'}", assets, _DiscardingSink(), clock)

    def run(first: int, last: int) -> None:
        for round_no in range(first, last):
            ts = _T0 + round_no * 1000
            clock["now"] = ts
            for i in range(assets):
                service.offer(_message(assets, i, round_no, ts, steady=False))

    warm_up_s = min(60, seconds)
    held = _traced_growth(lambda: run(0, warm_up_s), lambda: run(warm_up_s, warm_up_s + seconds))
    service.repository.close()
    return held / (assets * seconds)


def mes_microbench(
    assets: int = 200,
    seconds: int = 120,
    running_s: int = 1800,
    into_hour_s: int = 1200,
    memory_s: int = 900,
) -> dict[str, float]:
    """The figures (see the module), and ``uns_documents``: how many the measured pump built (a
    ``state`` and an ``oee`` document for each of its 50 assets). The memory figures take 20
    assets over ``memory_s`` seconds."""
    with tempfile.TemporaryDirectory(prefix="andon-mes-microbench-") as tmp:
        work = Path(tmp)
        uns_us, documents = _uns_document(work, 50, into_hour_s)
        return {
            "derive_us_per_message": _derive(work, assets, seconds, steady=False),
            "derive_batched_us_per_message": _derive(
                work, assets, seconds, steady=False, per_call=10
            ),
            "derive_running_us_per_message": _derive(work, 10, running_s, steady=True),
            "uns_document_us": uns_us,
            "uns_documents": documents,
            "derived_write_ms_per_half_second": _derived_write(work),
            "retained_bytes_per_sample": _retained_bytes_per_sample(20, memory_s),
            "mes_retained_bytes_per_asset_second": _mes_retained_bytes_per_asset_second(
                work, 20, memory_s
            ),
        }


def main(argv: Sequence[str] | None = None) -> None:
    args = [int(a) for a in (sys.argv[1:] if argv is None else argv)]
    print(json.dumps({k: round(v, 1) for k, v in mes_microbench(*args).items()}, indent=1))


if __name__ == "__main__":
    main()
