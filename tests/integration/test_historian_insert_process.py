"""The historian's inserts in a child process (andon.storage.insert_process): what happens when
the child or the server dies, and that errors keep their meaning across the process boundary.

The store contract (tests/contract/test_historian_store_contract.py) already runs every store
test through a child; these are the failures only real processes have.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.exc import OperationalError

from andon.cluster.model import FencedOut, FencingToken
from andon.storage.codec import UnstorableValueError
from andon.storage.historian_writer import HistorianWriter
from andon.storage.insert_process import InsertProcessStore
from andon.storage.migrate import upgrade_database
from andon.storage.store import HistorianStore, open_historian_store
from andon.storage.types import Sample
from andon.storage.writer_commands import is_transient_error
from andon.testing.processes import wait_until

T0 = 1_700_000_000_000
FAST_RETRY = (0.01, 0.05)


def _samples(count: int, start: int = 0, tag: str = "g/e/d/m") -> list[Sample]:
    return [Sample(tag, T0 + start + i, float(i), datatype=10) for i in range(count)]


def _gone(pid: int) -> bool:
    """The process has exited (reaped, or a zombie nobody has reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'historian.db'}"
    upgrade_database(url)
    return url


@pytest.fixture
def local_store(sqlite_url: str) -> Iterator[HistorianStore]:
    store = open_historian_store(sqlite_url)
    yield store
    store.close()


def test_a_killed_child_is_replaced_and_no_sample_is_lost(
    sqlite_url: str, local_store: HistorianStore, tmp_path: Path
) -> None:
    inserts = InsertProcessStore(local_store, sqlite_url)
    writer = HistorianWriter(
        inserts, retry_backoff_s=FAST_RETRY, spool_path=tmp_path / "historian.spool"
    )
    writer.start()
    try:
        assert writer.submit(_samples(1_000))
        assert writer.flush(timeout=30)
        first = inserts.child_pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: _gone(first), 10, "the child did not die")
        assert writer.submit(_samples(1_000, start=1_000))
        assert writer.flush(timeout=30)
        assert local_store.count() == 2_000
        assert inserts.child_pid not in (None, first)
        assert inserts.restarts_total == 1
        # Found dead before the batch was sent: replaced first, no failed attempt.
        assert writer.stats().failures_total == 0
    finally:
        assert writer.stop(timeout=30)
        inserts.close()


@pytest.mark.postgres
def test_a_child_killed_inside_its_transaction_commits_nothing_and_the_batch_is_retried(
    postgres_url: str, tmp_path: Path
) -> None:
    upgrade_database(postgres_url)
    local = open_historian_store(postgres_url)
    inserts = InsertProcessStore(local, postgres_url)
    writer = HistorianWriter(
        inserts, retry_backoff_s=FAST_RETRY, spool_path=tmp_path / "historian.spool"
    )
    writer.start()
    admin_url = postgres_url.replace("postgresql+psycopg://", "postgresql://", 1)
    try:
        assert writer.submit(_samples(10))
        assert writer.flush(timeout=30)
        child = inserts.child_pid
        assert child is not None
        with (
            psycopg.connect(admin_url) as blocker,
            psycopg.connect(admin_url, autocommit=True) as observer,
        ):
            blocker.execute("LOCK TABLE sample IN EXCLUSIVE MODE")
            assert writer.submit(_samples(5_000, start=10))

            blocker_pid = blocker.info.backend_pid

            def child_waits_for_the_lock() -> bool:
                # The child's connection, in this database, blocked by exactly our lock.
                row = observer.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND %s = ANY(pg_blocking_pids(pid))",
                    (blocker_pid,),
                ).fetchone()
                return row is not None and row[0] >= 1

            wait_until(child_waits_for_the_lock, 30, "the child never reached the lock")
            os.kill(child, signal.SIGKILL)
            wait_until(lambda: _gone(child), 10, "the child did not die")
            blocker.rollback()  # releases the lock: the retry goes through a new child
        assert writer.flush(timeout=60)
        assert local.count() == 5_010
        history = local.history("g/e/d/m", T0, T0 + 10_000)
        assert [s.ts_ms for s in history] == [T0 + i for i in range(5_010)]
        assert inserts.restarts_total == 1
        assert writer.stats().failures_total >= 1  # the batch the killed child held
    finally:
        assert writer.stop(timeout=30)
        inserts.close()
        local.close()


_ORPHAN_SCRIPT = """
import os, signal, sys
from andon.storage.insert_process import InsertProcessStore
from andon.storage.store import open_historian_store
from andon.storage.types import Sample
url = sys.argv[1]
inserts = InsertProcessStore(open_historian_store(url), url)
assert inserts.write_batch([Sample("g/e/d/m", 1, 1.0, datatype=10)]) == 1
print(inserts.child_pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_child_exits_when_the_server_is_killed(sqlite_url: str) -> None:
    parent = subprocess.run(
        [sys.executable, "-c", _ORPHAN_SCRIPT, sqlite_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert parent.returncode == -signal.SIGKILL, parent.stderr
    child = int(parent.stdout.strip())
    wait_until(lambda: _gone(child), 15, "the orphaned insert process did not exit")


def test_errors_keep_their_class_across_the_process(
    sqlite_url: str, local_store: HistorianStore
) -> None:
    inserts = InsertProcessStore(local_store, sqlite_url)
    try:
        # The data's fault: the original error, nothing written.
        batch = [*_samples(10), Sample("g/e/d/m", T0 + 99, 2**70, datatype=4)]
        with pytest.raises(UnstorableValueError, match="out of the Int64 range"):
            inserts.write_batch(batch[-1:] + _samples(3, tag="g/e/d/int"))
        # Fenced out: no lease for the domain in this database.
        token = FencingToken("line-1", 3, "node-a")
        with pytest.raises(FencedOut) as fenced:
            inserts.write_batch(_samples(10), fence=token)
        assert fenced.value.token == token
        assert local_store.count() == 0
        assert inserts.write_batch(batch[:10]) == 10
        assert inserts.restarts_total == 0  # errors are answers, not lost children
    finally:
        inserts.close()


def test_an_unreachable_database_is_a_transient_error(local_store: HistorianStore) -> None:
    # Nothing listens on port 1: the child cannot connect, the writer must retry, not quarantine.
    url = "postgresql+psycopg://andon@127.0.0.1:1/nowhere?connect_timeout=2"
    inserts = InsertProcessStore(local_store, url)
    try:
        with pytest.raises((OperationalError, ConnectionError)) as raised:
            inserts.write_batch(_samples(3))
        assert is_transient_error(raised.value), repr(raised.value)
        assert inserts.restarts_total == 0
    finally:
        inserts.close()


@pytest.mark.postgres
def test_the_database_password_reaches_the_child_only_through_its_socket(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade_database(postgres_url)
    # Trust authentication ignores the password; what matters is where it travels.
    url = postgres_url.replace("://postgres@", "://postgres:s3cret-pw@", 1)
    assert "s3cret-pw" in url
    monkeypatch.setenv("ANDON_DATABASE_URL", url)  # as a deployment would pass it
    local = open_historian_store(url)
    inserts = InsertProcessStore(local, url)
    try:
        assert inserts.write_batch(_samples(3)) == 3
        pid = inserts.child_pid
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            assert b"s3cret-pw" not in cmdline.read()
        with open(f"/proc/{pid}/environ", "rb") as environ:
            assert b"s3cret-pw" not in environ.read()
    finally:
        inserts.close()
        local.close()


def test_a_child_that_cannot_start_is_a_transient_error(
    sqlite_url: str, local_store: HistorianStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    inserts = InsertProcessStore(local_store, sqlite_url)
    try:
        # No interpreter to run: the batch must be retried later, never quarantined.
        monkeypatch.setattr(sys, "executable", "/nonexistent/python3")
        with pytest.raises(ConnectionError, match="did not start") as raised:
            inserts.write_batch(_samples(3))
        assert is_transient_error(raised.value)
        monkeypatch.undo()
        assert inserts.write_batch(_samples(3)) == 3
        assert inserts.children_started == 1
    finally:
        inserts.close()
    # A child that starts but cannot open the store says why, and counts as transient too.
    unusable = InsertProcessStore(local_store, "oracle://nobody@nowhere/db")
    try:
        with pytest.raises(ConnectionError, match=r"did not start: .*oracle") as raised:
            unusable.write_batch(_samples(3))
        assert is_transient_error(raised.value)
    finally:
        unusable.close()


def test_close_waits_for_the_child_and_later_writes_fail_cleanly(
    sqlite_url: str, local_store: HistorianStore
) -> None:
    inserts = InsertProcessStore(local_store, sqlite_url)
    assert inserts.write_batch(_samples(5)) == 5
    pid = inserts.child_pid
    assert pid is not None
    inserts.close()
    assert _gone(pid)
    with pytest.raises(ConnectionError, match="closed"):
        inserts.write_batch(_samples(1, start=10))
    assert local_store.count() == 5


def test_concurrent_writers_are_serialised(sqlite_url: str, local_store: HistorianStore) -> None:
    inserts = InsertProcessStore(local_store, sqlite_url)
    errors: list[BaseException] = []

    def write(offset: int) -> None:
        try:
            for n in range(5):
                inserts.write_batch(_samples(200, start=offset + n * 200))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=write, args=(k * 10_000,)) for k in range(3)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors
        assert local_store.count() == 3_000
        assert inserts.restarts_total == 0
    finally:
        inserts.close()
