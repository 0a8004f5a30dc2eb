"""The MES outbox on SQLite and PostgreSQL: every MES write path queues its records in the same
transaction, rollups carry absolute values, deletions are tombstones, a failed write queues
nothing, ids only grow, and a resync queues exactly the site's current records."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from andon.domain import (
    PRODUCTION,
    AssetPath,
    CountCorrection,
    CountEdit,
    CountEditMode,
    CountTriple,
    DomainError,
    OrderState,
    ProducedCount,
    ProductionOrder,
    Run,
    ScheduledRun,
    StateInterval,
    StateOverride,
    StateType,
    TimeAccount,
)
from andon.storage.enterprise import parse_outbox_message
from andon.storage.mes import MesChanges, MesRepository
from andon.storage.mes_edits import MesEditRepository
from andon.storage.mes_runs import RunRepository
from andon.storage.mes_schedule import ScheduleRepository
from andon.storage.migrate import upgrade_database
from andon.storage.outbox import (
    OutboxEntry,
    OutboxRepository,
    OutboxStats,
    disable_outbox,
    enable_outbox,
)
from andon.storage.outbox_records import read_all_records, record_key

A = AssetPath.parse("Site/Line/Cell")
H = 3_600_000
SITE = "Site1"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def mes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MesRepository]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'andon.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    upgrade_database(url)
    repository = MesRepository(url)
    enable_outbox(repository.engine, SITE)
    yield repository
    repository.close()


@pytest.fixture
def outbox(mes: MesRepository) -> OutboxRepository:
    return OutboxRepository(mes.engine)


def _interval(start: int, end: int | None, code: int = 1) -> StateInterval:
    kind = StateType.RUNNING if code == 1 else StateType.UNPLANNED_DOWNTIME
    return StateInterval(A, start, end, code, kind, None if code == 1 else "jam", PRODUCTION)


def _messages(outbox: OutboxRepository) -> dict[str, dict[str, Any]]:
    """The waiting messages by idempotency key, decoded as a consumer decodes them."""
    out = {}
    for entry in outbox.pending(1000):
        message = parse_outbox_message(entry.payload())
        assert message.version == entry.id
        assert message.site == SITE
        out[message.key] = {"deleted": message.deleted, "record": message.record}
    return out


def test_derived_changes_queue_full_records_and_rollups_absolute_values(
    mes: MesRepository, outbox: OutboxRepository
) -> None:
    first = MesChanges()
    first.intervals[(str(A), 0)] = _interval(0, None)
    first.counts[(str(A), 10)] = ProducedCount(A, 10, 5, 1)
    first.add_account(str(A), "hour", 0, H, "", TimeAccount(running_ms=100, total_count=5,
                      loss_by_reason=(("jam", 7),)))  # fmt: skip
    mes.write_changes(first)
    second = MesChanges()
    second.intervals[(str(A), 0)] = _interval(0, 50)
    second.intervals[(str(A), 50)] = _interval(50, None, code=10)
    second.counts[(str(A), 10)] = None  # deleted: a tombstone
    second.add_account(str(A), "hour", 0, H, "", TimeAccount(running_ms=-40, total_count=2,
                       loss_by_reason=(("jam", 3),)))  # fmt: skip
    mes.write_changes(second)

    messages = _messages(outbox)
    interval_key = f"state_interval:{record_key([str(A), 0])}"
    assert messages[interval_key]["record"] == {
        "asset": str(A), "start_ms": 0, "end_ms": 50, "code": 1, "state_type": "running",
        "reason_id": None, "mode": "Production",
    }  # fmt: skip
    assert messages[f"state_interval:{record_key([str(A), 50])}"]["record"]["code"] == 10
    assert messages[f"count:{record_key([str(A), 10])}"] == {"deleted": True, "record": None}
    rollup = messages[f"rollup:{record_key([str(A), 'hour', 0])}"]["record"]
    # The bucket's values after both writes, not the second increment.
    assert (rollup["running_ms"], rollup["total_count"], rollup["end_ms"]) == (60, 7, H)
    assert rollup["reasons"] == {"jam": 10}
    # The first write's rows of the same records were superseded while they waited.
    assert len(outbox.pending(1000)) == 4
    assert outbox.stats().depth == 4


def test_a_failed_mes_write_queues_nothing(mes: MesRepository, outbox: OutboxRepository) -> None:
    changes = MesChanges()
    changes.intervals[(str(A), 0)] = _interval(0, None)
    changes.add_account(str(A), "hour", 0, H, "", TimeAccount(running_ms=5))

    def fail(connection: sa.Connection) -> None:
        raise RuntimeError("the audit entry could not be written")

    changes.hooks.append(fail)
    with pytest.raises(RuntimeError, match="audit entry"):
        mes.write_changes(changes)
    assert mes.intervals(A, 0, H) == []
    assert outbox.pending(10) == []
    runs = RunRepository(mes.engine)
    runs.add_order(ProductionOrder("PO1", "item", 10))
    runs.add_run(Run("R1", "PO1", A, 0, 100))
    before = outbox.pending(10)
    with pytest.raises(DomainError, match="overlaps"):
        runs.add_run(Run("R2", "PO1", A, 50, 150))
    with pytest.raises(DomainError, match="unknown run"):
        runs.delete_run("nope")
    assert outbox.pending(10) == before


def test_orders_runs_and_schedule_queue_each_change_and_tombstones(
    mes: MesRepository, outbox: OutboxRepository
) -> None:
    runs = RunRepository(mes.engine)
    order = ProductionOrder("PO1", "item", 10, OrderState.RELEASED)
    runs.insert_missing([order], [Run("R1", "PO1", A, 0, 100)])
    runs.start_run("R2", "PO1", A, 100)
    runs.end_run("R2", 200)
    runs.set_order_state("PO1", OrderState.RUNNING)
    runs.delete_run("R1")
    plans = ScheduleRepository(mes.engine)
    plans.add(ScheduledRun("S1", "PO1", A, 0, H))
    plans.add(ScheduledRun("S2", "PO1", A, H, 2 * H))
    plans.edit(ScheduledRun("S1", "PO1", A, 0, H // 2))
    plans.delete("S2")

    messages = _messages(outbox)
    assert messages['run:["R1"]'] == {"deleted": True, "record": None}
    assert messages['run:["R2"]']["record"] == {
        "id": "R2", "order_id": "PO1", "asset": str(A), "start_ms": 100, "end_ms": 200,
    }  # fmt: skip
    assert messages['order:["PO1"]']["record"]["state"] == "running"
    assert messages['scheduled_run:["S1"]']["record"]["end_ms"] == H // 2
    assert messages['scheduled_run:["S2"]']["deleted"]
    assert len(messages) == 5  # one row per record: the newest change of each


def test_count_edits_and_added_states_queue_inside_the_callers_transaction(
    mes: MesRepository, outbox: OutboxRepository
) -> None:
    edits = MesEditRepository(mes.engine)
    edit = CountEdit(
        0, A, 0, 2 * H, CountEditMode.ADD, (10, None, None), CountTriple(10, 9, 1), "sv",
        "recount", 1_000,
    )  # fmt: skip
    with mes.engine.begin() as connection:
        stored = edits.insert_edit(
            connection, edit, [CountCorrection(A, 0, 7, 0), CountCorrection(A, H, 3, 1)]
        )
        edits.insert_added_state(connection, A, StateOverride(0, 60_000, 5), "jam", "sv", 2_000)
    key = f"count_edit:{record_key([stored.id])}"
    record = _messages(outbox)[key]["record"]
    assert record["corrections"] == [
        {"asset": str(A), "ts_ms": 0, "total": 7, "reject": 0},
        {"asset": str(A), "ts_ms": H, "total": 3, "reject": 1},
    ]
    assert record["reverted_ms"] is None
    with mes.engine.begin() as connection:
        edits.mark_reverted(connection, stored.id, "boss", 3_000)
        edits.delete_added_state(connection, A, 0)
    messages = _messages(outbox)
    assert messages[key]["record"]["corrections"] == []
    assert messages[key]["record"]["reverted_by"] == "boss"
    assert messages[f"added_state:{record_key([str(A), 0])}"]["deleted"]

    def add_then_fail() -> None:
        with mes.engine.begin() as connection:
            edits.insert_added_state(connection, A, StateOverride(H, H + 1, 5), None, "sv", 4_000)
            raise RuntimeError("the caller's transaction fails")

    with pytest.raises(RuntimeError):  # rolled back: nothing queued
        add_then_fail()
    assert f"added_state:{record_key([str(A), H])}" not in _messages(outbox)


def test_without_an_outbox_nothing_is_queued(mes: MesRepository, outbox: OutboxRepository) -> None:
    disable_outbox(mes.engine)
    RunRepository(mes.engine).add_order(ProductionOrder("PO1", "item", 10))
    changes = MesChanges()
    changes.intervals[(str(A), 0)] = _interval(0, None)
    mes.write_changes(changes)
    assert outbox.stats().depth == 0


def test_ids_only_grow_even_after_the_outbox_was_emptied(
    mes: MesRepository, outbox: OutboxRepository
) -> None:
    runs = RunRepository(mes.engine)
    runs.add_order(ProductionOrder("PO1", "item", 10))
    runs.add_order(ProductionOrder("PO2", "item", 10))
    first = outbox.pending(10)
    assert [e.id for e in first] == sorted(e.id for e in first)
    assert outbox.pending(10, after_id=first[0].id) == first[1:]
    assert outbox.delete(e.id for e in first) == 2
    assert outbox.delete(e.id for e in first) == 0  # already gone: nothing, no error
    assert outbox.stats() == OutboxStats(0, None)
    runs.set_order_state("PO1", OrderState.RELEASED)
    (later,) = outbox.pending(10)
    assert later.id > max(e.id for e in first)
    stats = outbox.stats()
    assert (stats.depth, stats.oldest_created_ms) == (1, later.created_ms)


def test_payload_is_the_documented_json(mes: MesRepository, outbox: OutboxRepository) -> None:
    RunRepository(mes.engine).add_order(ProductionOrder("PO1", "item", 10))
    (entry,) = outbox.pending(1)
    data = json.loads(entry.payload())
    assert data == {
        "key": 'order:["PO1"]', "kind": "order", "record_key": '["PO1"]', "version": entry.id,
        "site": SITE, "deleted": False, "created_ms": entry.created_ms,
        "record": {"id": "PO1", "item_id": "item", "quantity": 10, "state": "planned"},
    }  # fmt: skip
    tombstone = OutboxEntry(7, SITE, "run", '["R1"]', True, None, 5)
    assert json.loads(tombstone.payload())["record"] is None


def test_resync_queues_every_current_record(mes: MesRepository, outbox: OutboxRepository) -> None:
    disable_outbox(mes.engine)  # data from before forwarding was turned on
    runs = RunRepository(mes.engine)
    runs.insert_missing([ProductionOrder("PO1", "item", 10)], [Run("R1", "PO1", A, 0, 100)])
    changes = MesChanges()
    changes.intervals[(str(A), 0)] = _interval(0, None)
    changes.counts[(str(A), 10)] = ProducedCount(A, 10, 5, 1)
    changes.add_account(str(A), "shift", 0, H, "d/Day", TimeAccount(running_ms=9,
                        loss_by_reason=(("", 2),)))  # fmt: skip
    mes.write_changes(changes)
    assert outbox.stats().depth == 0

    assert outbox.resync(SITE) == 5
    with mes.engine.connect() as connection:
        site_records = read_all_records(connection)
    queued = {
        (m.kind, m.record_key): m.record
        for m in (parse_outbox_message(e.payload()) for e in outbox.pending(100))
    }
    assert queued == site_records
    assert site_records[("rollup", record_key([str(A), "shift", 0]))]["reasons"] == {"": 2}


def test_seed_queues_what_the_site_had_once_per_site_name(
    mes: MesRepository, outbox: OutboxRepository
) -> None:
    disable_outbox(mes.engine)  # records made before forwarding was turned on
    RunRepository(mes.engine).add_order(ProductionOrder("PO1", "item", 10))
    enable_outbox(mes.engine, SITE)
    assert outbox.seed(SITE) == 1
    assert [e.key for e in outbox.pending(10)] == ['order:["PO1"]']
    outbox.delete(e.id for e in outbox.pending(10))
    assert outbox.seed(SITE) is None  # a restart: not again
    assert outbox.stats().depth == 0
    assert outbox.seed("Renamed") == 1  # a new site name starts its own copy
    assert [e.site for e in outbox.pending(10)] == ["Renamed"]
