"""SQLite connections wait for one another when switching a new file to WAL.

SQLite refuses that switch at once ("database is locked", no busy wait) while another connection
holds a write lock; two cluster nodes starting on one new file met it (one migrating, the other
connecting). ``create_engine_for`` retries the switch for as long as its busy timeout.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from andon.storage import engine as engine_module
from andon.storage.engine import create_engine_for


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("CREATE TABLE migrating (x)")
    return holder


def test_connecting_waits_for_another_connection_s_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "new.db"
    holder = _hold_write_lock(path)
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        holder.execute("COMMIT")  # the other connection finishes while this one waits

    monkeypatch.setattr(engine_module, "_pause_before_retry", pause)
    engine = create_engine_for(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
            tables = connection.exec_driver_sql("SELECT name FROM sqlite_master").scalars()
            assert list(tables) == ["migrating"]  # the other connection's work, committed
        assert len(pauses) == 1
    finally:
        engine.dispose()
        holder.close()


def test_connecting_gives_up_after_the_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "new.db"
    holder = _hold_write_lock(path)
    monkeypatch.setattr(engine_module, "SQLITE_BUSY_TIMEOUT_MS", 0)
    engine = create_engine_for(f"sqlite:///{path}")
    try:
        with pytest.raises(sa.exc.OperationalError, match="locked"), engine.connect():
            pass
    finally:
        engine.dispose()
        holder.close()
