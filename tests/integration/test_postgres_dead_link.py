"""A link to PostgreSQL that goes dead without a word: packets vanish, nothing is reset.

The kernel drops one connection's packets on the loopback (``tc``, which needs
CAP_NET_ADMIN: CI runs as root). Without keepalives and a TCP user timeout, both ends of such a
connection wait for hours: the historian writer neither spools nor retries, and the database
backend of a COPY keeps its transaction (see andon.storage.engine and cluster_fencing)."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from andon.storage.engine import PG_DEAD_LINK_CLIENT, PG_DEAD_LINK_SERVER
from andon.storage.sql_store import SqlHistorianStore
from andon.storage.types import Sample
from andon.storage.writer_commands import is_transient_error
from andon.testing.processes import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

TAG = "Plant1/Edge1/M1/speed"
T0 = 1_700_000_000_000
#: Well above what the settings allow either end (about 25 s idle, 30 s unacknowledged).
GIVE_UP_S = 90


class PacketDrop:
    """Drops every packet to or from one local port on the loopback, both ways, as a dead link
    would: the sender's kernel believes them sent. (An HTB root whose default class passes all
    other traffic; the port's packets go to a class ending in a ``blackhole`` qdisc. Kernels
    without tc's action modules, such as CI's, still have these.)"""

    def __init__(self, tc: str) -> None:
        self._tc = tc
        self._active = False

    def _run(self, *args: str) -> None:
        done = subprocess.run([self._tc, *args], capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"tc {' '.join(args)}: {done.stderr.strip()}"

    def start(self, local_port: int) -> None:
        self._run("qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "1")
        self._active = True
        for leaf in ("1:1", "1:2"):
            self._run(
                "class", "add", "dev", "lo", "parent", "1:", "classid", leaf,
                "htb", "rate", "100gbit", "quantum", "60000",
            )  # fmt: skip
        self._run("qdisc", "add", "dev", "lo", "parent", "1:2", "handle", "20:", "blackhole")
        for field in ("sport", "dport"):
            self._run(
                "filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1",
                "u32", "match", "ip", field, str(local_port), "0xffff", "flowid", "1:2",
            )  # fmt: skip

    def stop(self) -> None:
        if self._active:
            self._run("qdisc", "del", "dev", "lo", "root")
            self._active = False


@pytest.fixture
def packet_drop(loopback_filter: str) -> Iterator[PacketDrop]:
    made = PacketDrop(loopback_filter)
    yield made
    made.stop()


def _local_port(connection: psycopg.Connection[Any]) -> int:
    with socket.socket(fileno=socket.dup(connection.pgconn.socket)) as sock:
        return int(sock.getsockname()[1])


def _admin(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url.replace("+psycopg", ""), autocommit=True)


def _backend_alive(url: str, pid: int) -> bool:
    with _admin(url) as admin:
        row = admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return row is not None


def _sleeping(url: str, pid: int) -> bool:
    with _admin(url) as admin:
        row = admin.execute(
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event = 'PgSleep'", (pid,)
        ).fetchone()
    return row is not None


@pytest.fixture
def store(postgres_historian_store: SqlHistorianStore) -> SqlHistorianStore:
    return postgres_historian_store


def test_every_connection_carries_the_dead_link_settings(store: SqlHistorianStore) -> None:
    with store.engine.connect() as connection:
        driver = connection.connection.driver_connection
        assert isinstance(driver, psycopg.Connection)
        if driver.info.host.startswith("/"):
            pytest.skip("a Unix socket: PostgreSQL ignores TCP settings there")
        client = driver.info.get_parameters()
        for name, value in PG_DEAD_LINK_CLIENT.items():
            assert client[name] == str(value), name
        for name, value in PG_DEAD_LINK_SERVER.items():
            assert connection.exec_driver_sql(f"SHOW {name}").scalar_one() == str(value), name


def test_a_batch_whose_link_dies_mid_copy_fails_over_and_the_backend_goes(
    store: SqlHistorianStore,
    postgres_url: str,
    packet_drop: PacketDrop,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert store.write_batch([Sample(TAG, T0, 1.0)]) == 1
    real_write_row = psycopg.Copy.write_row
    pids: list[int] = []

    def cut_then_write_row(self: psycopg.Copy, row: Sequence[Any]) -> None:
        if not pids:
            connection = self.cursor.connection
            pids.append(connection.info.backend_pid)
            packet_drop.start(_local_port(connection))
        real_write_row(self, row)

    outcome: list[BaseException | int] = []
    finished = threading.Event()

    def batch() -> None:
        try:
            outcome.append(store.write_batch([Sample(TAG, T0 + 1, 2.0)]))
        except BaseException as error:
            outcome.append(error)
        finished.set()

    monkeypatch.setattr(psycopg.Copy, "write_row", cut_then_write_row)
    threading.Thread(target=batch, daemon=True).start()
    # The client gives up: the historian writer then spools and retries instead of waiting
    # for hours.
    assert finished.wait(GIVE_UP_S), "the batch still waits on a dead link"
    (error,) = outcome
    assert isinstance(error, sa.exc.DBAPIError), error
    assert is_transient_error(error)
    # The server gives up too: the backend that waited for the COPY's data is gone, and with it
    # its transaction.
    (pid,) = pids
    wait_until(
        lambda: not _backend_alive(postgres_url, pid), GIVE_UP_S, "the COPY's backend lingers"
    )
    packet_drop.stop()
    monkeypatch.undo()
    assert store.write_batch([Sample(TAG, T0 + 1, 2.0)]) == 1
    assert [s.ts_ms for s in store.history(TAG, 0, 2**62)] == [T0, T0 + 1]


def test_a_statement_waiting_on_a_dead_link_fails(
    store: SqlHistorianStore, postgres_url: str, packet_drop: PacketDrop
) -> None:
    # The statement has reached the server before the link dies: nothing is left unacknowledged,
    # so only the keepalive probes can tell.
    with store.engine.connect() as connection:
        driver = connection.connection.driver_connection
        assert isinstance(driver, psycopg.Connection)
        pid = driver.info.backend_pid
        port = _local_port(driver)
        outcome: list[BaseException | None] = []
        finished = threading.Event()

        def wait_for_the_answer() -> None:
            try:
                connection.exec_driver_sql("SELECT pg_sleep(600)")
                outcome.append(None)
            except BaseException as error:
                outcome.append(error)
            finished.set()

        threading.Thread(target=wait_for_the_answer, daemon=True).start()
        wait_until(lambda: _sleeping(postgres_url, pid), 10, "the statement never started")
        packet_drop.start(port)
        try:
            assert finished.wait(GIVE_UP_S), "the statement still waits on a dead link"
        finally:
            packet_drop.stop()
            with _admin(postgres_url) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        (error,) = outcome
        assert isinstance(error, sa.exc.OperationalError), error
