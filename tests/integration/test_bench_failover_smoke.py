"""A quick run of ``andon bench failover``: it measures something real and reports it completely.

Two trials with a short lease (the bench itself uses the default timings). The figures are not
held against the targets here (DESIGN.md §8), except the counts: a failover loses nothing and
duplicates nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from andon.bench.failover import run_failover
from andon.bench.report import render_json, render_table

pytestmark = pytest.mark.integration


def test_failover_bench_kills_the_leader_and_counts_every_value(tmp_path: Path) -> None:
    done: list[tuple[str, float, float]] = []
    figures = run_failover(
        trials=2,
        lease_ttl_ms=1500,
        values_between=150,
        workdir=tmp_path,
        progress=lambda task, n, total: done.append((task, n, total)),
    )
    by_name = {f.name: f for f in figures}
    assert done[-1] == ("failover trials", 2, 2)
    median = by_name["kill -9 to standby active, median"]
    assert 0 < median.value <= by_name["kill -9 to standby active, max"].value
    assert by_name["kill -9 to lease taken, median"].value > 0
    assert by_name["values lost"].value == 0
    assert by_name["values duplicated"].value == 0
    assert int(median.conditions["values"]) > 300  # type: ignore[call-overload]
    assert median.conditions["trials"] == 2
    assert "values lost" in render_table(figures)
    assert '"benchmark": "failover"' in render_json(figures)
