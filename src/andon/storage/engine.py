"""Engines configured the way the historian needs them, for SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url

__all__ = [
    "PG_DEAD_LINK_CLIENT",
    "PG_DEAD_LINK_SERVER",
    "SQLITE_BEGIN_OPTION",
    "SQLITE_BUSY_TIMEOUT_MS",
    "SQLITE_CACHE_KIB",
    "create_engine_for",
    "is_postgresql",
    "is_sqlite",
    "normalize_url",
]

#: How long a SQLite connection waits for another writer before failing with "locked".
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: SQLite page cache per connection, in KiB.
SQLITE_CACHE_KIB = 65_536
#: Execution option naming the SQLite BEGIN mode of a connection's next transaction.
SQLITE_BEGIN_OPTION = "andon_sqlite_begin"


def normalize_url(url: str | URL) -> URL:
    """Parse ``url``; plain ``postgresql://`` / ``postgres://`` use the psycopg 3 driver."""
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def is_sqlite(url: str | URL) -> bool:
    return normalize_url(url).get_backend_name() == "sqlite"


def is_postgresql(url: str | URL) -> bool:
    return normalize_url(url).get_backend_name() == "postgresql"


def create_engine_for(url: str | URL, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite gets WAL, ``synchronous=FULL``, a busy timeout and FKs."""
    parsed = normalize_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        # The historian writer and API readers use the engine from different threads.
        kwargs.setdefault("connect_args", {}).setdefault("check_same_thread", False)
        engine = sa.create_engine(parsed, **kwargs)
        _configure_sqlite(engine)
        return engine
    if backend == "postgresql":
        # A connection broken by a database restart is replaced instead of failing a batch.
        kwargs.setdefault("pool_pre_ping", True)
        # Without a timeout, connecting to a host that accepts TCP but never answers (a dead
        # link, a hung proxy) blocks the historian writer forever instead of failing over to
        # its spool and retrying.
        connect_args = kwargs.setdefault("connect_args", {})
        connect_args.setdefault("connect_timeout", 10)
        # A link that goes dead without a word (a cable, a firewall's dropped state) would
        # otherwise hold a waiting statement for hours: the historian writer would neither
        # fail over to its spool nor retry, and the data would back up to the broker.
        for name, value in PG_DEAD_LINK_CLIENT.items():
            if name not in parsed.query:
                connect_args.setdefault(name, value)
        engine = sa.create_engine(parsed, **kwargs)
        _configure_postgresql(engine)
        return engine
    raise ValueError(f"unsupported database URL {parsed.render_as_string(hide_password=True)}")


#: libpq's settings of every PostgreSQL connection unless its URL sets them: a peer that stops
#: answering is given up after about 25 s idle (keepalive probes) or 30 s of data left unacked.
#: (Linux also gives up when data stays unsent 30 s because the peer's window is full, i.e. the
#: peer does not read: Andon never streams to the database without reading its answers.)
PG_DEAD_LINK_CLIENT: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}
#: The same on the server's side of the connection, set in each new session: the backend of a
#: client that vanished mid-COPY waits for the client's data, which no statement timeout ends
#: (see cluster_fencing), and would hold its transaction's locks until the server's kernel gave
#: up on the connection (2 hours by default).
PG_DEAD_LINK_SERVER: dict[str, int] = {
    "tcp_keepalives_idle": 10,
    "tcp_keepalives_interval": 5,
    "tcp_keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}


def _configure_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SET rather than libpq's "options": poolers such as PgBouncer refuse unknown startup
        # parameters. Over a Unix socket PostgreSQL accepts and ignores them.
        # One round trip; a setting the server does not have (tcp_user_timeout before
        # PostgreSQL 12) is skipped rather than failing every connection.
        names = list(PG_DEAD_LINK_SERVER)
        values = [str(PG_DEAD_LINK_SERVER[name]) for name in names]
        with dbapi_connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config(s.name, s.value, false)"
                " FROM unnest(%s::text[], %s::text[]) AS s(name, value)"
                " JOIN pg_settings USING (name)",
                (names, values),
            )
        dbapi_connection.commit()


def _pause_before_retry(seconds: float) -> None:
    time.sleep(seconds)


def _enable_wal(cursor: sqlite3.Cursor) -> None:
    """Switch to WAL, waiting for other connections as ``busy_timeout`` would.

    Switching from a rollback journal (a new file) needs an exclusive lock, and SQLite answers
    "database is locked" at once, without the busy handler, while another connection holds a
    write lock: waiting could deadlock two connections that both read first. Two servers
    starting on one new file (a cluster's nodes) met exactly that, so it is retried here.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
        _pause_before_retry(0.05)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite would otherwise start
        # transactions lazily and never with IMMEDIATE).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            _enable_wal(cursor)
            # With WAL, NORMAL is durable against application crashes and fast; an OS crash
            # may lose the last transactions but never corrupts the file.
            # FULL: a committed batch has already left every buffer upstream (edge spool,
            # historian spool), so a power cut must not take it back.
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            # The (tag_id, ts) B-tree takes inserts at one place per tag; a page cache larger
            # than the 2 MiB default keeps those leaf pages in memory (allocated only as used).
            cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        # Writers ask for IMMEDIATE: taking the write lock up front makes concurrent writers
        # wait (busy_timeout) instead of failing when a deferred read lock cannot be upgraded.
        mode = connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED")
        if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
            raise ValueError(f"invalid SQLite BEGIN mode {mode!r}")
        connection.exec_driver_sql(f"BEGIN {mode}")
