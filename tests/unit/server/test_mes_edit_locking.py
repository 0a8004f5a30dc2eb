"""Manual edits and the MES service's lock, through the real historian writer on SQLite: an edit
waits for the writer's backlog without the lock (ingest goes on), reads the sums of its period
rather than its records, and a run change re-rates the counts with grouped sums exactly as
record by record."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from andon.domain import (
    AssetPath,
    BucketKind,
    CountEditMode,
    CountRecord,
    Run,
    TimeAccount,
    account_for,
)
from andon.server.mes_count_edits import CountEdits
from andon.server.mes_service import MesService
from andon.server.plant_file import parse_plant
from andon.storage.historian_writer import HistorianWriter
from andon.storage.mes import MesRepository, MesWrite
from andon.storage.mes_edits import MesEditRepository
from andon.storage.mes_runs import RunRepository
from andon.storage.types import Sample
from andon.testing.mes import CELL, T0, TAG, MesRig, small_plant

HOUR = 3_600_000
MIN = 60_000
ASSET = AssetPath.parse(CELL)


class GatedSink:
    """The rig's writer, whose next flush after ``hold`` waits until the test opens the gate:
    a database slow to store the backlog."""

    def __init__(self, writer: HistorianWriter) -> None:
        self.writer = writer
        self.held = threading.Event()
        self.entered = threading.Event()
        self.gate = threading.Event()

    def submit_derived(self, write: MesWrite, timeout: float | None = None) -> bool:
        return self.writer.submit_derived(write, timeout)

    def flush(self, timeout: float | None = None) -> bool:
        if self.held.is_set():
            self.held.clear()
            self.entered.set()
            assert self.gate.wait(30), "the test never opened the gate"
        return self.writer.flush(timeout)


def _counts(start: int, minutes: int, step: int = 3) -> list[Sample]:
    return [Sample(TAG + "In", start + m * MIN, (m * step) % 9999) for m in range(minutes)]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[MesRig]:
    rig = MesRig(f"sqlite:///{tmp_path / 'andon.db'}")
    rig.service.offer([Sample(TAG + "State", T0 - 5 * HOUR, 1), *_counts(T0 - 4 * HOUR, 240)])
    rig.flush()
    yield rig
    rig.close()


def test_ingest_goes_on_while_an_edit_waits_for_a_slow_writer(rig: MesRig) -> None:
    sink = GatedSink(rig.writer)
    service = MesService(
        rig.plant, rig.repository, RunRepository(rig.repository.engine), sink,
        clock=lambda: rig.now,
    )  # fmt: skip
    service.seed(ASSET, rig.repository.intervals_since(ASSET, T0 - 6 * HOUR))
    made: list[Any] = []

    def edit() -> None:
        edits = CountEdits(service)
        period = (ASSET, T0 - 2 * HOUR, T0, CountEditMode.ADD)
        made.append(edits.add(*period, (None, 5, None), "sup", "recount", T0, lambda *_: None))

    sink.held.set()
    editing = threading.Thread(target=edit)
    editing.start()
    derived = threading.Event()
    try:
        assert sink.entered.wait(10)  # the edit waits for the slow writer now
        ingest = threading.Thread(
            target=lambda: (service.offer([Sample(TAG + "State", T0 + MIN, 10)]), derived.set())
        )
        ingest.start()
        assert derived.wait(10), "ingest waited for the edit's flush (the MES lock was held)"
        current = service.current(ASSET)
        assert current is not None
        assert current.code == 10
    finally:
        sink.gate.set()
        editing.join(30)
    assert [e.change.outfeed for e in made] == [5]


def test_edits_read_sums_never_the_records_of_their_period(
    rig: MesRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_lists(*args: object, **kwargs: object) -> list[Any]:
        raise AssertionError("an edit loaded the count records of its period")

    monkeypatch.setattr(MesRepository, "counts", no_lists)
    monkeypatch.setattr(MesEditRepository, "corrections", no_lists)
    service = rig.service
    edit = CountEdits(service).add(
        ASSET, T0 - 4 * HOUR, T0, CountEditMode.ADD, (None, 40, None), "sup", "recount", T0,
        lambda *_: None,
    )  # fmt: skip
    assert edit.change.outfeed == 40
    service.end_run("R1", T0 - 2 * HOUR)  # re-rates every count after its end
    service.edit_run(Run("R1", "PO1", AssetPath.parse("Site/Area/Line"), T0 - 8 * HOUR, None))
    assert [r.end_ms for r in service.run_repository.runs()] == [None]


# -- re-rating by groups is exact ---------------------------------------------------------------

COUNT_FIELDS = (
    "total_count", "reject_count", "startup_reject_count", "unrated_count", "ideal_time_us",
    "reject_ideal_time_us", "startup_reject_ideal_time_us",
)  # fmt: skip


def _odd_rates_plant() -> dict[str, Any]:
    """Rates whose cycle times are no whole number of microseconds: every record's ideal time
    is rounded on its own, so grouping must keep equal records together to stay exact."""
    return small_plant(
        item=[{"id": "w", "name": "Water"}, {"id": "x", "name": "Juice"}],
        rate=[
            {"item": "w", "asset": CELL, "units_per_minute": 7},
            {"item": "x", "asset": CELL, "units_per_minute": 13},
        ],
        order=[
            {"id": "PO1", "item": "w", "quantity": 1000, "state": "running"},
            {"id": "PO2", "item": "x", "quantity": 1000, "state": "running"},
        ],
    )


def _count_figures(account: TimeAccount) -> dict[str, int]:
    return {name: getattr(account, name) for name in COUNT_FIELDS}


def _expected(rig: MesRig, start: int, end: int) -> dict[str, int]:
    records: list[CountRecord] = [
        *rig.repository.counts(ASSET, start, end),
        *rig.service.edit_repository.corrections(ASSET, start, end),
    ]
    direct = account_for([], records, start, end, ideal_cycle_ms=rig.service.cycle_time_ms)
    return _count_figures(direct)


def test_run_changes_re_rate_the_rollups_exactly(tmp_path: Path) -> None:
    rig = MesRig(f"sqlite:///{tmp_path / 'odd.db'}", plant=parse_plant(_odd_rates_plant(), "t"))
    try:
        service = rig.service
        steps = [Sample(TAG + "State", T0 - 7 * HOUR, 1)]
        total = waste = 0
        for m in range(12 * 60):  # a count each minute, uneven steps, some waste
            total += (m * 7) % 5
            waste += 1 if m % 11 == 0 else 0
            ts = T0 - 6 * HOUR + m * MIN
            steps += [Sample(TAG + "In", ts, total % 9999), Sample(TAG + "Waste", ts, waste)]
        service.offer(steps)
        rig.flush()
        span = (T0 - 6 * HOUR, T0 + 6 * HOUR)

        def hours() -> dict[str, int]:
            rig.flush()
            stored = rig.repository.rollup_total([ASSET], BucketKind.HOUR.value, *span)
            shifts = rig.repository.rollup_total([ASSET], BucketKind.SHIFT.value, *span)
            assert _count_figures(stored)["total_count"] == _count_figures(shifts)["total_count"]
            return _count_figures(stored)

        assert hours() == _expected(rig, *span)
        line = AssetPath.parse("Site/Area/Line")
        service.end_run("R1", T0 - 3 * HOUR - 17 * MIN)
        assert hours() == _expected(rig, *span)
        CountEdits(service).add(
            ASSET, T0 - 5 * HOUR, T0 + HOUR, CountEditMode.ADD, (None, 123, 9), "s", "c", T0,
            lambda *_: None,
        )  # fmt: skip
        service.add_run(Run("R2", "PO2", ASSET, T0 - 2 * HOUR - 7 * MIN, T0 + 30 * MIN))
        assert hours() == _expected(rig, *span)
        service.edit_run(Run("R2", "PO1", ASSET, T0 - 150 * MIN, None))  # another order, open
        assert hours() == _expected(rig, *span)
        service.edit_run(Run("R1", "PO2", line, T0 - 9 * HOUR, T0 - 4 * HOUR))
        assert hours() == _expected(rig, *span)
        service.delete_run("R2")
        assert hours() == _expected(rig, *span)
        assert hours()["unrated_count"] > 0
        assert hours()["ideal_time_us"] > 0
    finally:
        rig.close()
