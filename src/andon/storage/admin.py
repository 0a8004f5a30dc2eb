"""Creating and dropping whole PostgreSQL databases (benchmarks and tests use fresh ones)."""

from __future__ import annotations

__all__ = ["create_postgres_database", "drop_postgres_database"]


def _admin_url(url: str) -> str:
    base, _, _ = url.rpartition("/")
    return base.replace("postgresql+psycopg://", "postgresql://") + "/postgres"


def create_postgres_database(url: str, name: str) -> str:
    """Create database ``name`` on the server of ``url``; returns the new database's URL."""
    import psycopg  # CREATE DATABASE cannot run inside a transaction, so not through SQLAlchemy

    with psycopg.connect(_admin_url(url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return f"{url.rpartition('/')[0]}/{name}"


def drop_postgres_database(url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(_admin_url(url), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
