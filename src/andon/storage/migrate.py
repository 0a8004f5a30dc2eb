"""Bring a database to the current schema, programmatically (no alembic.ini on disk)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from andon.storage.engine import SQLITE_BEGIN_OPTION, create_engine_for

__all__ = ["MIGRATIONS_DIR", "current_revision", "head_revision", "upgrade_database"]

#: Shipped inside the package (hatchling includes everything under src/andon in the wheel).
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade_database(url: str | URL) -> None:
    """Create or upgrade the schema at ``url`` to the newest revision. Idempotent.

    Safe to call from several processes at once: PostgreSQL serialises on an advisory lock,
    SQLite on its write lock (the migration transaction begins IMMEDIATE). A database already at
    the newest revision is only read: taking SQLite's write lock for the whole check (loading
    the migration scripts) would stall the other nodes of a cluster sharing the file, whose
    lease renewals wait for that lock.
    """
    if current_revision(url) == head_revision():
        return
    engine = create_engine_for(url)
    try:
        with engine.connect() as connection:
            connection.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
            config = _alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()


def head_revision() -> str:
    """The newest revision shipped with this version of Andon."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def current_revision(url: str | URL) -> str | None:
    """The revision the database at ``url`` is at, or None if it was never migrated."""
    engine = create_engine_for(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
