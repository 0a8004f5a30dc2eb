"""A small plant, a SQLite database, the real historian writer and the MES service (tests)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from andon.server._mes_window import paged_history
from andon.server.mes_limits import MesLimits
from andon.server.mes_queries import MesQueries
from andon.server.mes_service import DEFAULT_HORIZON_MS, MesService
from andon.server.plant_file import PlantModel, parse_plant
from andon.storage.historian_writer import HistorianWriter
from andon.storage.mes import MesRepository
from andon.storage.mes_runs import RunRepository
from andon.storage.migrate import upgrade_database
from andon.storage.store import open_historian_store

__all__ = ["CELL", "T0", "TAG", "MesRig", "small_plant"]

#: 2026-03-02 00:00 Europe/Prague (a Monday) in UTC ms.
T0 = 1_772_406_000_000
CELL = "Site/Area/Line/Cell"
TAG = "G/N/Cell/"


def small_plant(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "asset": [
            {"path": "Site", "kind": "site", "timezone": "Europe/Prague"},
            {"path": "Site/Area", "kind": "area"},
            {"path": "Site/Area/Line", "kind": "line"},
            {
                "path": CELL,
                "kind": "cell",
                "state_map": "m",
                "counter_max": 9999,
                "tags": {
                    "state": TAG + "State",
                    "mode": TAG + "Mode",
                    "infeed": TAG + "In",
                    "waste": TAG + "Waste",
                },
            },
        ],
        "reason": [
            {"id": "mech", "name": "Mechanical"},
            {"id": "jam", "name": "Jam", "parent": "mech"},
            {"id": "line", "name": "Line"},
            {"id": "blocked", "name": "Blocked", "parent": "line"},
        ],
        "state_map": {
            "m": {
                "state": [
                    {"code": 1, "name": "Running", "type": "running"},
                    {"code": 3, "name": "Blocked", "type": "blocked", "reason": "blocked"},
                    {"code": 6, "name": "Planned", "type": "planned_downtime"},
                    {"code": 10, "name": "Jam", "type": "unplanned_downtime", "reason": "jam"},
                ]
            }
        },
        "item": [{"id": "w", "name": "Water"}],
        "rate": [{"item": "w", "asset": CELL, "units_per_minute": 60}],
        "calendar": [
            {
                "site": "Site",
                "shift": [
                    {"name": "Day", "start": "06:00", "end": "18:00",
                     "breaks": [{"start": "12:00", "end": "12:30"}]},
                    {"name": "Night", "start": "18:00", "end": "06:00"},
                ],
            }
        ],
        "order": [{"id": "PO1", "item": "w", "quantity": 1000, "state": "running"}],
        "run": [{"id": "R1", "order": "PO1", "asset": "Site/Area/Line",
                 "start": "2026-03-01T00:00:00Z"}],
    }  # fmt: skip
    doc.update(extra)
    return doc


class MesRig:
    """``now`` is the clock of the queries and of the service's pruning horizon."""

    def __init__(
        self,
        url: str,
        plant: PlantModel | None = None,
        now_ms: int = T0,
        *,
        horizon_ms: int = DEFAULT_HORIZON_MS,
        clock: Callable[[], int] | None = None,
        limits: MesLimits | None = None,
    ) -> None:
        upgrade_database(url)
        self.url = url
        self.now = now_ms
        self.store = open_historian_store(url)
        self.writer = HistorianWriter(self.store, max_batch_delay_s=0.0)
        self.writer.start()
        self.repository = MesRepository(url)
        self.plant = plant or parse_plant(small_plant(), "test.toml")
        self.service = MesService(
            self.plant,
            self.repository,
            RunRepository(self.repository.engine),
            self.writer,
            history=functools.partial(paged_history, self.store),
            horizon_ms=horizon_ms,
            clock=clock or (lambda: self.now),
            limits=limits,
        )
        self.service.load()
        self.queries = MesQueries(self.service, clock=lambda: self.now)

    def flush(self) -> None:
        assert self.writer.flush(timeout=30.0)

    def close(self) -> None:
        self.writer.stop(timeout=30.0)
        self.store.close()
        self.repository.close()
