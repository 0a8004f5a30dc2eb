"""Fixtures shared by the contract tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from andon.storage.migrate import upgrade_database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def migrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database at the current schema: a new SQLite file, or the test PostgreSQL database."""
    url = (
        f"sqlite:///{tmp_path / 'andon.db'}"
        if request.param == "sqlite"
        else str(request.getfixturevalue("postgres_url"))
    )
    upgrade_database(url)
    return url
