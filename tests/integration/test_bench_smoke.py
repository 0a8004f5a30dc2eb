"""A quick run of each benchmark: it measures something real and reports it completely.

The figures themselves are never asserted against targets here (DESIGN.md §8: performance is
measured by ``andon bench``, not by timed tests).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from andon.bench.ingest import run_ingest
from andon.bench.latency import run_latency
from andon.bench.query import run_query_bench
from andon.bench.replay import run_replay
from andon.bench.report import render_json, render_table
from andon.bench.scale import cell_path, run_scale, scale_plant_toml
from andon.server.plant_file import parse_plant

pytestmark = pytest.mark.integration


def test_replay_bench_drains_a_small_backlog_and_reports_it(tmp_path: Path) -> None:
    figures = run_replay(minutes=1, machines=2, tags_per_machine=25, workdir=tmp_path)
    names = {f.name for f in figures}
    assert names == {"backlog drain rate", "backlog drain speed"}
    for figure in figures:
        assert figure.value > 0
        assert figure.conditions["backlog_values"] == 60 * 2 * 25
        assert figure.conditions["elapsed_s"] > 0  # type: ignore[operator]
    assert "backlog drain rate" in render_table(figures)
    assert '"benchmark": "replay"' in render_json(figures)


def test_ingest_bench_counts_every_value_and_measures_the_database_limit(tmp_path: Path) -> None:
    figures = run_ingest(seconds=1.0, workdir=tmp_path)
    by_name = {f.name: f for f in figures}
    end_to_end = by_name["end-to-end ingest"]
    assert end_to_end.value > 0
    assert end_to_end.limit is not None
    assert end_to_end.limit > 0
    assert end_to_end.conditions["lost"] == 0
    assert int(end_to_end.conditions["values"]) > 0  # type: ignore[call-overload]
    paused = float(end_to_end.conditions["publisher_paused_s"])  # type: ignore[arg-type]
    assert 0.0 <= paused <= float(end_to_end.conditions["publish_s"])  # type: ignore[arg-type]
    ratio = by_name["ingest / database limit"]
    assert ratio.value == pytest.approx(end_to_end.value / end_to_end.limit)


def test_query_bench_times_the_oee_trend_and_site_queries(tmp_path: Path) -> None:
    figures = run_query_bench(f"sqlite:///{tmp_path / 'q.db'}", days=2, repeat=3, site_machines=5)
    assert {f.unit for f in figures} == {"ms"}
    assert len(figures) == 6
    for figure in figures:
        assert figure.value > 0
    site = [f for f in figures if f.name.startswith("site-wide daily OEE, 5 assets")]
    assert len(site) == 2
    assert site[0].conditions["days_returned"] == 2


def test_scale_bench_measures_the_server_under_a_paced_plant(tmp_path: Path) -> None:
    figures = run_scale(assets=6, tags=8, seconds=2.0, warmup=1.0, workdir=tmp_path)
    by_name = {f.name: f for f in figures}
    cpu = by_name["server CPU (share of one core)"]
    assert 0 < cpu.value < 2.0  # a share of the machine's two cores
    assert cpu.conditions["assets"] == 6
    assert cpu.conditions["kept_up"] is True  # a tiny plant: the server keeps up
    assert cpu.conditions["lost"] == 0
    assert by_name["server memory (peak RSS)"].value > 10


def test_scale_plant_binds_every_machine_to_its_edge() -> None:
    model = parse_plant(tomllib.loads(scale_plant_toml(50, 2)), "scale.toml")
    assert len(model.bound_assets) == 50
    assert model.bindings["Scale/Edge2/M0049/Count/Waste"].role == "waste"
    assert model.bindings["Scale/Edge1/M0000/State/Code"].asset == model.bound_assets[0]
    assert cell_path(49).endswith("/M0049")


def test_latency_bench_times_probe_values_through_the_live_feed(tmp_path: Path) -> None:
    figures = run_latency(capacity=1000.0, seconds=2.0, warmup=1.0, workdir=tmp_path)
    by_name = {f.name: f for f in figures}
    p50 = by_name["edge to live feed, p50"]
    assert 0 < p50.value <= by_name["edge to live feed, p99"].value
    assert by_name["edge to live feed, p99"].value <= by_name["edge to live feed, max"].value
    assert p50.conditions["load_values_s"] == 200
    assert int(p50.conditions["probes_measured"]) > 0  # type: ignore[call-overload]
