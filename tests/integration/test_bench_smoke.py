"""A quick run of each benchmark: it measures something real and reports it completely.

The figures themselves are never asserted against targets here (DESIGN.md §8: performance is
measured by ``andon bench``, not by timed tests).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from andon.bench.replay import run_replay
from andon.bench.report import render_json, render_table

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
