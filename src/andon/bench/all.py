"""``andon bench all``: every benchmark in turn with the figures of DESIGN.md §9.

The durations are the issue's (ingest sustained for 60 s, scale measured for 5 minutes) and
the whole run stays under 15 minutes on the reference machine. A benchmark that fails is
reported as a figure with its error (and the others still run), so one broken part does not
hide the rest. The SQLite ingest rate of the same run is the capacity the latency benchmark
loads the server against.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from andon.bench.report import Figure

__all__ = ["BenchStep", "bench_steps", "run_all"]

Progress = Callable[[str, float, float], None]


@dataclass(frozen=True, slots=True)
class BenchStep:
    name: str
    module: str
    function: str
    options: dict[str, object]


def bench_steps(postgres_url: str | None, *, quick: bool = False) -> list[BenchStep]:
    """The benchmarks of ``all``; ``quick`` shrinks every one to seconds (a smoke run)."""
    ingest_s, scale_s, latency_s = (2.0, 3.0, 2.0) if quick else (60.0, 300.0, 30.0)
    scale_options: dict[str, object] = {"seconds": scale_s, "warmup": 1.0 if quick else 20.0}
    if quick:
        scale_options["assets"] = 10
    steps: list[BenchStep] = [
        BenchStep("replay", "andon.bench.replay", "run_replay",
                  {"minutes": 1, "machines": 2} if quick else {}),
        BenchStep("ingest", "andon.bench.ingest", "run_ingest", {"seconds": ingest_s}),
    ]  # fmt: skip
    if postgres_url is not None:
        steps.append(
            BenchStep("ingest", "andon.bench.ingest", "run_ingest",
                      {"seconds": ingest_s, "database_url": postgres_url})
        )  # fmt: skip
    steps += [
        BenchStep("query", "andon.bench.query", "run_query_bench",
                  {"days": 3, "repeat": 3, "site_machines": 20} if quick else {"repeat": 20}),
        BenchStep("latency", "andon.bench.latency", "run_latency",
                  {"seconds": latency_s, "warmup": 1.0 if quick else 5.0}),
        BenchStep("scale", "andon.bench.scale", "run_scale", scale_options),
    ]  # fmt: skip
    try:
        importlib.import_module("andon.bench.failover")
    except ImportError:
        pass
    else:
        steps.append(
            BenchStep("failover", "andon.bench.failover", "run_failover",
                      {"trials": 2 if quick else 5})
        )  # fmt: skip
    return steps


def run_all(
    *,
    postgres_url: str | None = None,
    quick: bool = False,
    progress: Progress | None = None,
) -> list[Figure]:
    figures: list[Figure] = []
    capacity: float | None = None
    for step in bench_steps(postgres_url, quick=quick):
        options = dict(step.options)
        if step.name == "latency" and capacity is not None:
            options["capacity"] = capacity
        try:
            run = getattr(importlib.import_module(step.module), step.function)
            found: list[Figure] = run(progress=progress, **options)
        except (
            ImportError,
            OSError,
            RuntimeError,
            TimeoutError,
            ValueError,
            AssertionError,
        ) as exc:
            figures.append(
                Figure(step.name, "failed", float("nan"), "", met=False,
                       conditions={"error": str(exc).splitlines()[0][:300], **options})
            )  # fmt: skip
            continue
        figures.extend(found)
        if step.name == "ingest" and "database_url" not in options:
            capacity = next(f.value for f in found if f.name == "end-to-end ingest")
    return figures
