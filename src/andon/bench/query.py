"""``andon bench query``: OEE of one asset over a year, and its hourly trend, from the rollups.

A year of one machine's data is derived through the real ``MesService`` into a database (the
records an ingest of that year would have stored: intervals, counts, hour and shift rollups),
without MQTT. States change every few seconds to an hour (as a 1 s state tag would show them:
only changes make intervals). Counters are fed once a minute rather than every second: the
rollups hold the same totals either way and the queries read only rollups, so this only
shortens the generation. Then the two queries of DESIGN.md §9 run repeatedly (p50 and p99):
the OEE of the year (target ≤ 50 ms) and the hourly trend of the year (≤ 100 ms). Before the
timed calls, the objects alive are frozen out of the garbage collector's sight, as ``andon
server`` does once started (``andon.server.long_lived``).
"""

from __future__ import annotations

import gc
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import date
from datetime import time as wall_time
from pathlib import Path
from zoneinfo import ZoneInfo

from andon.bench.report import Figure
from andon.domain import AssetPath, local_to_utc_ms
from andon.server.long_lived import freeze_long_lived_objects
from andon.server.mes_queries import MesQueries
from andon.server.mes_service import MesService
from andon.server.plant_file import parse_plant
from andon.storage.historian_writer import HistorianWriter
from andon.storage.mes import MesRepository
from andon.storage.mes_runs import RunRepository
from andon.storage.migrate import upgrade_database
from andon.storage.rollup_copies import copy_asset_rollups
from andon.storage.store import open_historian_store
from andon.storage.types import Sample

__all__ = ["generate_year", "run_query_bench"]

Progress = Callable[[str, float, float], None]

ASSET = "Bench/Area/Line/M1"
_TAG = "Bench/Edge/M1/"
_ZONE = "Europe/Prague"
_DAY_MS = 86_400_000
_STATES = (1, 1, 1, 1, 3, 4, 5, 6, 10, 11, 12)


def _plant_doc(machines: int = 1) -> dict[str, object]:
    state = [
        {"code": 1, "name": "Running", "type": "running"},
        {"code": 3, "name": "Blocked", "type": "blocked", "reason": "line"},
        {"code": 4, "name": "Starved", "type": "starved", "reason": "line"},
        {"code": 5, "name": "Changeover", "type": "setup", "reason": "setup"},
        {"code": 6, "name": "Planned stop", "type": "planned_downtime"},
        *(
            {"code": c, "name": f"Fault {c}", "type": "unplanned_downtime", "reason": "fault"}
            for c in (10, 11, 12)
        ),
    ]
    return {
        "asset": [
            {"path": "Bench", "kind": "site", "timezone": _ZONE},
            {"path": "Bench/Area", "kind": "area"},
            {"path": "Bench/Area/Line", "kind": "line"},
            {
                "path": ASSET,
                "kind": "cell",
                "state_map": "m",
                "tags": {
                    "state": _TAG + "State/Code",
                    "infeed": _TAG + "Count/Infeed",
                    "waste": _TAG + "Count/Waste",
                },
            },
            # The site-wide query's other machines: their rollups are copies of M1's.
            *(
                {
                    "path": f"Bench/Area/Line/M{n}",
                    "kind": "cell",
                    "state_map": "m",
                    "tags": {
                        "state": f"Bench/Edge/M{n}/State/Code",
                        "infeed": f"Bench/Edge/M{n}/Count/Infeed",
                        "waste": f"Bench/Edge/M{n}/Count/Waste",
                    },
                }
                for n in range(2, machines + 1)
            ),
        ],
        "reason": [
            {"id": "line", "name": "Line"},
            {"id": "setup", "name": "Setup"},
            {"id": "fault", "name": "Fault"},
        ],
        "state_map": {"m": {"state": state}},
        "item": [{"id": "i", "name": "Item"}],
        "rate": [{"item": "i", "asset": ASSET, "units_per_minute": 100}],
        "calendar": [
            {
                "site": "Bench",
                "shift": [
                    {"name": n, "start": s, "end": e, "breaks": [{"start": b, "end": be}]}
                    for n, s, e, b, be in (
                        ("Morning", "06:00", "14:00", "10:00", "10:30"),
                        ("Afternoon", "14:00", "22:00", "18:00", "18:30"),
                        ("Night", "22:00", "06:00", "02:00", "02:30"),
                    )
                ],
            }
        ],
        "order": [{"id": "PO", "item": "i", "quantity": 10**9, "state": "running"}],
        "run": [
            {"id": "R", "order": "PO", "asset": "Bench/Area/Line", "start": "2000-01-01T00:00:00Z"}
        ],
    }


def generate_year(
    service: MesService, start_ms: int, days: int, progress: Progress | None = None
) -> int:
    """Feed ``days`` days of one machine through the service, a day per batch; returns the
    number of samples."""
    rng = random.Random(1)
    state_t, infeed, waste, fed = start_ms, 0, 0, 0
    for day in range(days):
        day_start, day_end = start_ms + day * _DAY_MS, start_ms + (day + 1) * _DAY_MS
        samples: list[Sample] = []
        while state_t < day_end:
            samples.append(Sample(_TAG + "State/Code", state_t, rng.choice(_STATES)))
            state_t += rng.choice((2_000, 30_000, 90_000, 300_000, 900_000, 3_600_000))
        for ts in range(day_start, day_end, 60_000):
            step = rng.randrange(60, 100)
            infeed = (infeed + step) % 2**32
            waste = (waste + (1 if rng.random() < 0.05 else 0)) % 2**32
            samples.append(Sample(_TAG + "Count/Infeed", ts, infeed))
            samples.append(Sample(_TAG + "Count/Waste", ts, waste))
        service.offer(samples)
        fed += len(samples)
        if progress is not None:
            progress("deriving a year into rollups", day + 1, days)
    return fed


def _copy_rollups(repository: MesRepository, machines: int) -> float:
    """Give machines M2..M<machines> copies of M1's rollups (the rows the site-wide query
    reads); returns the seconds it took. Deriving 500 machine-years would take hours, and
    the query does the same work whatever the numbers in the rows are."""
    started = time.perf_counter()
    copy_asset_rollups(
        repository.engine, ASSET, [f"Bench/Area/Line/M{n}" for n in range(2, machines + 1)]
    )
    return time.perf_counter() - started


def _percentiles(call: Callable[[], object], repeat: int) -> tuple[float, float]:
    call()  # warm the database cache and the code paths once
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
    return statistics.median(times), p99


def run_query_bench(
    database_url: str | None = None,
    days: int = 365,
    repeat: int = 50,
    progress: Progress | None = None,
    site_machines: int = 500,
) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="andon-bench-query-") as tmp:
        url = database_url or f"sqlite:///{Path(tmp) / 'andon.db'}"
        upgrade_database(url)
        store = open_historian_store(url)
        writer = HistorianWriter(store)
        repository = MesRepository(url)
        writer.start()
        try:
            service = MesService(
                parse_plant(_plant_doc(), "bench"),
                repository,
                RunRepository(repository.engine),
                writer,
            )
            service.load()
            start = local_to_utc_ms(date(2025, 1, 1), wall_time(0), ZoneInfo(_ZONE))
            end = local_to_utc_ms(date.fromordinal(date(2025, 1, 1).toordinal() + days),
                                  wall_time(0), ZoneInfo(_ZONE))  # fmt: skip
            started = time.perf_counter()
            fed = generate_year(service, start, days, progress)
            if not writer.flush(timeout=3600):
                raise RuntimeError("the writer did not finish")
            generation_s = time.perf_counter() - started
            queries = MesQueries(service, clock=lambda: end)
            asset = AssetPath.parse(ASSET)
            # As `andon server` does once started: what start-up loaded is frozen out of the
            # garbage collector's sight (unfrozen below: this process goes on to other work).
            freeze_long_lived_objects()
            oee_p50, oee_p99 = _percentiles(lambda: queries.account(asset, start, end), repeat)
            trend_p50, trend_p99 = _percentiles(
                lambda: queries.hourly(asset, start, end), max(5, repeat // 2)
            )
            account = queries.account(asset, start, end)
            copy_s = _copy_rollups(repository, site_machines)
            site_queries = MesQueries(
                MesService(
                    parse_plant(_plant_doc(site_machines), "bench"),
                    repository,
                    RunRepository(repository.engine),
                    writer,
                ),
                clock=lambda: end,
            )
            site = AssetPath.parse("Bench")
            if len(site_queries.leaves(site)) != site_machines:
                raise RuntimeError("the site-wide query would not cover every machine")
            site_days = site_queries.daily(site, start, end)
            site_p50, site_p99 = _percentiles(
                lambda: site_queries.daily(site, start, end), max(3, repeat // 10)
            )
        finally:
            gc.unfreeze()
            writer.stop(timeout=60)
            store.close()
            repository.close()
    conditions: dict[str, object] = {
        "database": url.split(":", 1)[0],
        "days": days,
        "samples_derived": fed,
        "generation_s": round(generation_s, 1),
        "oee": round(account.oee or 0.0, 4),
    }
    site_conditions: dict[str, object] = {
        **conditions,
        "assets": site_machines,
        "days_returned": len(site_days),
        "rollup_rows_copied_s": round(copy_s, 1),
    }
    return [
        Figure("query", "OEE of one asset over the period, p50", oee_p50, "ms", "<= 50 ms",
               oee_p50 <= 50, conditions=conditions),
        Figure("query", "OEE of one asset over the period, p99", oee_p99, "ms", "<= 50 ms",
               oee_p99 <= 50, conditions=conditions),
        Figure("query", "hourly trend over the period, p50", trend_p50, "ms", "<= 100 ms",
               trend_p50 <= 100, conditions=conditions),
        Figure("query", "hourly trend over the period, p99", trend_p99, "ms", "<= 100 ms",
               trend_p99 <= 100, conditions=conditions),
        Figure("query", f"site-wide daily OEE, {site_machines} assets, p50", site_p50, "ms",
               "", None, conditions=site_conditions),
        Figure("query", f"site-wide daily OEE, {site_machines} assets, p99", site_p99, "ms",
               "", None, conditions=site_conditions),
    ]  # fmt: skip
