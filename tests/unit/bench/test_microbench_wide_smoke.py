"""The wide-plant writer micro-benchmark runs and stores every value (no timing asserted)."""

from __future__ import annotations

from andon.bench.microbench_wide import wide_plant_rate


def test_wide_plant_rate_writes_every_value_and_reports_rates() -> None:
    result = wide_plant_rate(tags=200, seconds=3, batch=250)
    assert result["values"] == 600
    assert result["values_s"] > 0
    assert result["cpu_us_per_value"] > 0
