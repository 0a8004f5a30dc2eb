"""The in-process micro-benchmarks run on a tiny load and report every figure (no timings)."""

from __future__ import annotations

from andon.bench.microbench import host_decode_rate
from andon.bench.microbench_sqlite import sqlite_insert_rates


def test_host_decode_microbench_reports_each_stage() -> None:
    result = host_decode_rate(5_000, repeat=1)
    assert result["values"] >= 5_000
    assert all(result[stage] > 0 for stage in ("decode_resolve", "ingest", "host_and_ingest"))


def test_sqlite_insert_microbench_writes_every_row_both_ways() -> None:
    result = sqlite_insert_rates(20_000)
    assert result["rows"] == 20_000
    keys = ("executemany_alone", "store_alone", "executemany_contended", "store_contended")
    assert all(result[key] > 0 for key in keys)
