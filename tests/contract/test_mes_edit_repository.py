"""MesEditRepository (count edits, their corrections, states added by hand): the same behaviour
on SQLite and PostgreSQL, inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from andon.domain import (
    AssetPath,
    CountCorrection,
    CountEdit,
    CountEditMode,
    CountTriple,
    StateOverride,
)
from andon.storage.mes import MesRepository
from andon.storage.mes_edits import MesEditRepository
from andon.storage.migrate import upgrade_database

A = AssetPath.parse("Site/Line/Cell")
B = AssetPath.parse("Site/Line/Other")
H = 3_600_000


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MesEditRepository]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'andon.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    upgrade_database(url)
    mes = MesRepository(url)
    yield MesEditRepository(mes.engine)
    mes.close()


def _edit(asset: AssetPath, start: int, end: int, change: CountTriple) -> CountEdit:
    return CountEdit(
        0, asset, start, end, CountEditMode.ADD, (change.infeed, None, None), change, "sv",
        "recount", 1_000,
    )  # fmt: skip


def _store(repo: MesEditRepository, edit: CountEdit, pieces: list[CountCorrection]) -> CountEdit:
    with repo.engine.begin() as connection:
        return repo.insert_edit(connection, edit, pieces)


def test_edits_and_corrections_are_stored_listed_and_reverted(repo: MesEditRepository) -> None:
    pieces = [CountCorrection(A, 0, 7, 0), CountCorrection(A, H, 3, 1)]
    first = _store(repo, _edit(A, 0, 2 * H, CountTriple(10, 9, 1)), pieces)
    second = _store(
        repo, _edit(B, H, 3 * H, CountTriple(-2, -2, 0)), [CountCorrection(B, H, -2, 0)]
    )
    assert second.id > first.id > 0
    assert (first.asset, first.start_ms, first.end_ms, first.mode) == (
        A,
        0,
        2 * H,
        CountEditMode.ADD,
    )
    assert (first.change, first.requested, first.created_ms) == (
        CountTriple(10, 9, 1),
        (10, None, None),
        1_000,
    )
    assert repo.get_edit(first.id) == first
    assert repo.get_edit(999) is None
    assert [e.id for e in repo.edits([A, B])] == [second.id, first.id]  # newest first
    assert [e.id for e in repo.edits([A, B], 2 * H, 3 * H)] == [second.id]  # overlapping only
    assert [e.id for e in repo.edits([A], H, H + 1)] == [first.id]
    assert repo.corrections(A, 0, 2 * H) == [
        CountCorrection(A, 0, 7, 0, first.id),
        CountCorrection(A, H, 3, 1, first.id),
    ]
    assert repo.corrections(A, 1, 2 * H) == [CountCorrection(A, H, 3, 1, first.id)]
    assert repo.corrections(A, 0, 2 * H, edit_id=second.id) == []
    with repo.engine.begin() as connection:
        reverted = repo.mark_reverted(connection, first.id, "boss", 5_000)
    assert (reverted.active, reverted.reverted_ms, reverted.reverted_by) == (False, 5_000, "boss")
    assert repo.get_edit(first.id) == reverted
    assert repo.corrections(A, 0, 2 * H) == []
    assert [e.id for e in repo.edits([A, B], in_force=True)] == [second.id]


def test_an_edit_rolls_back_with_its_transaction(repo: MesEditRepository) -> None:
    def store_then_fail() -> None:
        with repo.engine.begin() as connection:
            edit = _edit(A, 0, H, CountTriple(1, 1, 0))
            repo.insert_edit(connection, edit, [CountCorrection(A, 0, 1, 0)])
            raise RuntimeError("the audit entry failed")

    with pytest.raises(RuntimeError):
        store_then_fail()
    assert repo.edits([A]) == []
    assert repo.corrections(A, 0, H) == []


def test_added_states_are_stored_found_by_overlap_and_deleted(repo: MesEditRepository) -> None:
    with repo.engine.begin() as connection:
        repo.insert_added_state(connection, A, StateOverride(100, 200, 10), "jam", "sv", 7)
        repo.insert_added_state(connection, A, StateOverride(300, 400, 3), None, "sv", 8)
        repo.insert_added_state(connection, B, StateOverride(100, 200, 10), None, "sv", 9)
    found = repo.added_states(A, 150, 350)
    assert [(a.override, a.reason_id, a.username, a.created_ms) for a in found] == [
        (StateOverride(100, 200, 10), "jam", "sv", 7),
        (StateOverride(300, 400, 3), None, "sv", 8),
    ]
    assert repo.added_states(A, 200, 300) == []  # touching is not overlapping
    with repo.engine.begin() as connection:
        repo.delete_added_state(connection, A, 100)
    assert [a.override.start_ms for a in repo.added_states(A, 0, 1000)] == [300]
    assert len(repo.added_states(B, 0, 1000)) == 1
