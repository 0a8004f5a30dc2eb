"""``andon bench all``: which benchmarks it runs, and that one failure does not hide the rest."""

from __future__ import annotations

import math
import sys
import types

import pytest

from andon.bench import all as bench_all
from andon.bench.report import Figure


def test_the_full_run_uses_the_durations_the_targets_name() -> None:
    steps = {(s.name, s.options.get("database_url")): s for s in bench_all.bench_steps(None)}
    assert steps[("ingest", None)].options["seconds"] == 60.0
    assert steps[("scale", None)].options["seconds"] == 300.0
    assert ("ingest", "postgresql://x") not in steps
    assert steps[("failover", None)].options["trials"] == 5
    with_pg = bench_all.bench_steps("postgresql://x")
    assert [s.options.get("database_url") for s in with_pg if s.name == "ingest"] == [
        None,
        "postgresql://x",
    ]


@pytest.fixture
def fake_benches(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """Replace every benchmark module by a fake that records its call."""
    calls: list[dict[str, object]] = []

    def fake(name: str, figure: str, fail: bool = False) -> types.ModuleType:
        module = types.ModuleType(name)

        def run(**options: object) -> list[Figure]:
            calls.append({"module": name, **options})
            if fail:
                raise RuntimeError("broker did not start\nmore detail")
            return [Figure(name.rsplit(".", 1)[1], figure, 1234.0, "values/s")]

        for function in ("run_replay", "run_ingest", "run_query_bench", "run_latency", "run_scale"):
            setattr(module, function, run)
        return module

    monkeypatch.setitem(sys.modules, "andon.bench.replay", fake("andon.bench.replay", "x"))
    monkeypatch.setitem(
        sys.modules, "andon.bench.ingest", fake("andon.bench.ingest", "end-to-end ingest")
    )
    monkeypatch.setitem(sys.modules, "andon.bench.query", fake("andon.bench.query", "q"))
    monkeypatch.setitem(sys.modules, "andon.bench.latency", fake("andon.bench.latency", "l"))
    monkeypatch.setitem(sys.modules, "andon.bench.scale", fake("andon.bench.scale", "s", True))
    monkeypatch.setitem(sys.modules, "andon.bench.failover", None)  # not importable
    return calls


def test_a_failing_benchmark_is_a_figure_and_the_rest_still_run(
    fake_benches: list[dict[str, object]],
) -> None:
    figures = bench_all.run_all(quick=True)
    failed = [f for f in figures if f.name == "failed"]
    assert len(failed) == 1
    assert failed[0].benchmark == "scale"
    assert failed[0].met is False
    assert math.isnan(failed[0].value)
    assert failed[0].conditions["error"] == "broker did not start"
    assert [c["module"] for c in fake_benches] == [
        "andon.bench.replay",
        "andon.bench.ingest",
        "andon.bench.query",
        "andon.bench.latency",
        "andon.bench.scale",
    ]
    # The latency benchmark loads the server against the ingest rate measured in the same run.
    latency_call = next(c for c in fake_benches if c["module"] == "andon.bench.latency")
    assert latency_call["capacity"] == 1234.0
