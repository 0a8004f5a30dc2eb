"""The PostgreSQL historian store's COPY runs on the driver's own cursor, beneath SQLAlchemy: its
errors must still reach the historian writer as SQLAlchemy's classes (it retries and spools on an
outage, quarantines bad data), and a connection the error broke must not be handed out again."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from andon.storage.sql_store import SqlHistorianStore
from andon.storage.types import Sample
from andon.storage.writer_commands import is_transient_error

pytestmark = pytest.mark.postgres

TAG = "Plant1/Edge1/M1/speed"
T0 = 1_700_000_000_000


@pytest.fixture
def store(postgres_historian_store: SqlHistorianStore) -> SqlHistorianStore:
    return postgres_historian_store


def _stored(store: SqlHistorianStore) -> list[float]:
    return [float(s.value) for s in store.history(TAG, 0, 2**62)]  # type: ignore[arg-type]


def test_a_backend_killed_mid_copy_is_an_outage_and_the_retry_lands(
    store: SqlHistorianStore, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert store.write_batch([Sample(TAG, T0, 1.0)]) == 1  # the session's staging table exists
    real_write_row = psycopg.Copy.write_row
    killed: list[int] = []

    def kill_then_write_row(self: psycopg.Copy, row: Sequence[Any]) -> None:
        if not killed:
            pid = self.cursor.connection.info.backend_pid
            with psycopg.connect(postgres_url.replace("+psycopg", ""), autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            killed.append(pid)
        real_write_row(self, row)

    monkeypatch.setattr(psycopg.Copy, "write_row", kill_then_write_row)
    with pytest.raises(sa.exc.DBAPIError) as raised:
        store.write_batch([Sample(TAG, T0 + 1, 2.0)])
    assert killed
    assert is_transient_error(raised.value), raised.value
    assert raised.value.connection_invalidated
    monkeypatch.undo()
    # A new session: the pool dropped the broken connection, and the staging table is made anew.
    assert store.write_batch([Sample(TAG, T0 + 1, 2.0), Sample(TAG, T0 + 2, 3.0)]) == 2
    assert _stored(store) == [1.0, 2.0, 3.0]


def test_rows_the_database_refuses_are_not_an_outage(store: SqlHistorianStore) -> None:
    # A constraint the rows break: no retry will change that, so the writer must quarantine.
    with store.engine.begin() as connection:
        connection.exec_driver_sql(
            f"ALTER TABLE sample ADD CONSTRAINT refuse CHECK (ts <> {T0}) NOT VALID"
        )
    with pytest.raises(sa.exc.IntegrityError) as raised:
        store.write_batch([Sample(TAG, T0 + 1, 1.0), Sample(TAG, T0, 2.0)])
    assert not is_transient_error(raised.value)
    assert store.count() == 0  # rolled back, not half written
    with store.engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE sample DROP CONSTRAINT refuse")
    assert store.write_batch([Sample(TAG, T0 + 1, 1.0), Sample(TAG, T0, 2.0)]) == 2
    assert _stored(store) == [2.0, 1.0]
