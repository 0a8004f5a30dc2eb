"""Alembic environment for the Andon schema; driven by ``andon.storage.migrate``.

The caller passes an open connection in ``config.attributes["connection"]``; there is no
alembic.ini and no offline (SQL script) mode.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from andon.storage.schema import metadata

#: Arbitrary constant key of the PostgreSQL advisory lock held while migrating.
MIGRATION_LOCK_KEY = 0x414E444F4E  # "ANDON"


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, sa.Connection):
        raise RuntimeError("run migrations through andon.storage.migrate.upgrade_database()")
    sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds tables for later migrations.
        render_as_batch=sqlite,
        # Both databases roll DDL back; one transaction makes a failed upgrade leave nothing.
        transactional_ddl=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Several nodes may start at once: serialise them so only one creates the tables.
            lock = sa.text("SELECT pg_advisory_xact_lock(:key)")
            connection.execute(lock, {"key": MIGRATION_LOCK_KEY})
        context.run_migrations()


run_migrations_online()
