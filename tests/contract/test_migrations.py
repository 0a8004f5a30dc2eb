"""Migrations: idempotent upgrade on both databases, and the schema module matches them."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import andon.storage
from andon.storage.engine import create_engine_for
from andon.storage.migrate import MIGRATIONS_DIR, current_revision, head_revision, upgrade_database
from andon.storage.schema import metadata


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'andon.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def _table_names(url: str) -> set[str]:
    engine = create_engine_for(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_twice_is_a_no_op(database_url: str) -> None:
    assert current_revision(database_url) is None
    upgrade_database(database_url)
    assert current_revision(database_url) == head_revision()
    tables = _table_names(database_url)
    assert {"tag", "sample", "quarantine", "alembic_version"} <= tables

    upgrade_database(database_url)

    assert current_revision(database_url) == head_revision()
    assert _table_names(database_url) == tables


def test_schema_module_matches_the_migrations(database_url: str) -> None:
    upgrade_database(database_url)
    engine = create_engine_for(database_url)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_plain_postgresql_scheme_is_accepted(postgres_url: str) -> None:
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://", 1)
    upgrade_database(plain)
    assert current_revision(postgres_url) == head_revision()


def test_migrations_ship_inside_the_package() -> None:
    # hatchling packages everything under src/andon, so a directory inside the package is in
    # the wheel; migrate.py finds it relative to itself, not via an alembic.ini.
    assert MIGRATIONS_DIR.parent == Path(andon.storage.__file__).resolve().parent
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()
    assert list((MIGRATIONS_DIR / "versions").glob("0001_*.py"))
