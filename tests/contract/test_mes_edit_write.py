"""A manual MES edit through the historian writer, on SQLite and PostgreSQL: never merged with
ingest's changes (a refused edit takes nothing else with it), its outcome told to the waiter, and
a write committed in parts resumed where it stopped (no increment written twice)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from andon.domain import PRODUCTION, AssetPath, DomainError, StateInterval, StateType, TimeAccount
from andon.storage.historian_writer import HistorianWriter
from andon.storage.mes import MesChanges, MesRepository, MesWrite
from andon.storage.mes_edit_outcome import EditOutcome
from andon.storage.migrate import upgrade_database
from andon.storage.schema import mes_state_interval_table
from andon.storage.store import open_historian_store

A = AssetPath.parse("Site/Line/Cell")
H = 3_600_000


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    found = (
        f"sqlite:///{tmp_path / 'andon.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    upgrade_database(found)
    return found


@pytest.fixture
def repo(url: str) -> Iterator[MesRepository]:
    repository = MesRepository(url)
    yield repository
    repository.close()


@pytest.fixture
def writer(url: str) -> Iterator[HistorianWriter]:
    """Derived writes gather for an hour: everything submitted merges until a flush."""
    store = open_historian_store(url)
    writer = HistorianWriter(store, derived_max_delay_s=3600.0, retry_backoff_s=(0.001, 0.01))
    writer.start()
    yield writer
    assert writer.stop(timeout=30)
    store.close()


def _interval(start_ms: int, reason: str | None = None) -> StateInterval:
    return StateInterval(A, start_ms, start_ms + 1000, 1, StateType.UNPLANNED_DOWNTIME,
                         reason, PRODUCTION)  # fmt: skip


def _ingest(repo: MesRepository, start_ms: int, reason: str | None = None) -> MesWrite:
    changes = MesChanges()
    changes.intervals[(str(A), start_ms)] = _interval(start_ms, reason)
    changes.add_account(str(A), "hour", 0, H, "", TimeAccount(unplanned_downtime_ms=1000))
    return MesWrite(repo, changes)


def _edit(repo: MesRepository, start_ms: int, *hooks: object) -> MesWrite:
    write = _ingest(repo, start_ms, "edited")
    write.changes.hooks.extend(hooks)  # type: ignore[arg-type]
    return write


def _stored(repo: MesRepository) -> list[tuple[int, str | None]]:
    t = mes_state_interval_table
    with repo.engine.connect() as connection:
        rows = connection.execute(sa.select(t.c.start_ms, t.c.reason_id).order_by(t.c.start_ms))
        return [(int(start), reason) for start, reason in rows]


def _downtime(repo: MesRepository) -> int:
    return repo.rollup_total([A], "hour", 0, H).unplanned_downtime_ms


def test_a_refused_edit_takes_nothing_else_with_it(
    repo: MesRepository, writer: HistorianWriter
) -> None:
    def refuse(connection: sa.Connection) -> None:
        raise RuntimeError("audit table unavailable")

    outcome = EditOutcome()
    assert writer.submit_derived(_ingest(repo, 0), timeout=10)
    assert writer.submit_derived(_edit(repo, 2000, refuse, outcome), timeout=10)
    assert writer.submit_derived(_ingest(repo, 4000), timeout=10)
    assert writer.flush(timeout=30)
    assert _stored(repo) == [(0, None), (4000, None)]
    assert _downtime(repo) == 2000  # the two ingest writes' increments, not the edit's
    assert outcome.settled
    assert isinstance(outcome.error, RuntimeError)
    stats = writer.stats()
    assert (stats.derived_dropped_total, stats.derived_queued) == (0, 0)


def test_a_stored_edit_is_told_and_keeps_its_place_in_order(
    repo: MesRepository, writer: HistorianWriter
) -> None:
    outcome = EditOutcome()
    assert writer.submit_derived(_ingest(repo, 0), timeout=10)
    assert writer.submit_derived(_edit(repo, 0, outcome), timeout=10)  # rewrites the same key
    assert writer.submit_derived(_ingest(repo, 2000), timeout=10)
    assert writer.flush(timeout=30)
    assert outcome.settled
    assert outcome.error is None
    assert _stored(repo) == [(0, "edited"), (2000, None)]  # the later write of key 0 won
    assert _downtime(repo) == 3000


def test_a_domain_refusal_reaches_the_waiter_as_it_is(
    repo: MesRepository, writer: HistorianWriter
) -> None:
    def overlap(connection: sa.Connection) -> None:
        raise DomainError("run 'R2' overlaps run 'R1'")

    outcome = EditOutcome()
    assert writer.submit_derived(_edit(repo, 0, overlap, outcome), timeout=10)
    assert writer.flush(timeout=30)
    assert outcome.wait(0)
    assert isinstance(outcome.error, DomainError)
    assert "overlaps" in str(outcome.error)
    assert _stored(repo) == []


def test_a_write_committed_in_parts_resumes_where_it_stopped(
    repo: MesRepository, writer: HistorianWriter
) -> None:
    failures = [OperationalError("INSERT", {}, ConnectionRefusedError("database restarting"))]

    def down_once(connection: sa.Connection) -> None:
        if failures:
            raise failures.pop()

    outcome = EditOutcome()
    assert writer.submit_derived(_ingest(repo, 0), timeout=10)
    assert writer.submit_derived(_edit(repo, 2000, down_once, outcome), timeout=10)
    assert writer.submit_derived(_ingest(repo, 4000), timeout=10)
    assert writer.flush(timeout=30)  # the first part commits, the edit is retried, then the rest
    assert outcome.settled
    assert outcome.error is None
    assert _stored(repo) == [(0, None), (2000, "edited"), (4000, None)]
    assert _downtime(repo) == 3000  # each increment once
    assert writer.stats().derived_queued == 0
