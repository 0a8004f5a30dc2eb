"""Shared fixtures.

Tests that need a real service (PostgreSQL, Mosquitto) skip on a laptop without it, but CI sets
``ANDON_REQUIRE_SERVICES=1`` and then a missing service is a failure, never a silent skip.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from andon.storage.sql_store import SqlHistorianStore

REQUIRE_SERVICES = os.environ.get("ANDON_REQUIRE_SERVICES") == "1"
POSTGRES_ADMIN_URL = os.environ.get(
    "ANDON_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def service_unavailable(reason: str) -> None:
    """Skip locally; fail in CI where every service must be exercised."""
    if REQUIRE_SERVICES:
        pytest.fail(f"required service unavailable (ANDON_REQUIRE_SERVICES=1): {reason}")
    pytest.skip(reason)


def _postgres_admin() -> object | None:
    try:
        import psycopg

        return psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except Exception:
        return None


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards.

    Yields a SQLAlchemy URL (``postgresql+psycopg://...``).
    """
    import psycopg

    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        service_unavailable(f"PostgreSQL at {POSTGRES_ADMIN_URL}: {exc}")
        raise  # unreachable: service_unavailable raises
    name = f"andon_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_historian_store(postgres_url: str) -> Iterator[SqlHistorianStore]:
    """The historian store on a fresh, migrated PostgreSQL database."""
    from andon.storage.migrate import upgrade_database
    from andon.storage.sql_store import SqlHistorianStore
    from andon.storage.store import open_historian_store

    upgrade_database(postgres_url)
    made = open_historian_store(postgres_url)
    assert isinstance(made, SqlHistorianStore)
    yield made
    made.close()


@pytest.fixture
def mosquitto_binary() -> str:
    path = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )
    if path is None:
        service_unavailable("mosquitto binary not found")
        raise AssertionError  # unreachable
    return path


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """Debian's chromium for the browser tests (Playwright never downloads a browser here)."""
    path = shutil.which("chromium")
    if path is None:
        service_unavailable("chromium not found (apt-get install chromium)")
        raise AssertionError  # unreachable
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests last: Playwright's sync API keeps an event loop running in the main thread
    for the session, after which ``asyncio.run()`` in any other test would fail."""

    def is_browser_test(item: pytest.Item) -> bool:
        return item.get_closest_marker("e2e") is not None or "/e2e/" in f"/{item.nodeid}"

    items.sort(key=is_browser_test)  # stable: the order within each group is kept


@pytest.fixture
def loopback_filter() -> str:
    """``tc``, able to filter the loopback's packets (needs CAP_NET_ADMIN: CI runs as root)."""
    import subprocess

    path = shutil.which("tc")
    if path is None:
        service_unavailable("tc (iproute2) not found")
        raise AssertionError  # unreachable
    shown = subprocess.run(
        [path, "qdisc", "show", "dev", "lo"], capture_output=True, text=True, check=False
    )
    if "qdisc blackhole 20: parent 1:2" in shown.stdout:
        # Left by a run of test_postgres_dead_link killed before its teardown.
        subprocess.run([path, "qdisc", "del", "dev", "lo", "root"], check=True)
    # What PacketDrop in test_postgres_dead_link builds on: an HTB root and a blackhole leaf.
    probe = subprocess.run(
        [path, "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "1"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        service_unavailable(f"cannot filter the loopback's packets: {probe.stderr.strip()}")
    subprocess.run([path, "qdisc", "del", "dev", "lo", "root"], check=True)
    return path
