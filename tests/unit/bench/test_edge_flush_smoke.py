"""The edge flush benchmark drains a tiny backlog, directly and through its delaying proxy, and
reports every figure (no timing checked)."""

from __future__ import annotations

import pytest

from andon.bench.edge_flush import edge_flush_rate


@pytest.mark.parametrize(("rounds", "delay_ms"), [(1, 0.0), (4, 2.0)])
def test_edge_flush_bench_drains_the_whole_backlog(rounds: int, delay_ms: float) -> None:
    result = edge_flush_rate(1, rounds, delay_ms)
    assert result["values"] == 30_000  # one minute of 500 tags at 1 Hz
    assert result["messages"] >= 30_000 / 1000  # at most 1,000 values per message
    assert result["values_per_s"] > 0
    assert result["cpu_us_per_value"] > 0
