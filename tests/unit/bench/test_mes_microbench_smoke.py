"""The MES micro-benchmark runs on a tiny load and reports every figure (no timings)."""

from __future__ import annotations

from andon.bench.mes_microbench import mes_microbench


def test_mes_microbench_reports_each_figure_and_builds_every_document() -> None:
    result = mes_microbench(assets=4, seconds=3, running_s=3, into_hour_s=3, memory_s=3)
    assert result["uns_documents"] == 2 * 50  # a state and an oee document per asset
    keys = (
        "derive_us_per_message", "derive_batched_us_per_message",
        "derive_running_us_per_message", "uns_document_us",
        "derived_write_ms_per_half_second", "retained_bytes_per_sample",
        "mes_retained_bytes_per_asset_second",
    )  # fmt: skip
    assert all(result[key] > 0 for key in keys)
