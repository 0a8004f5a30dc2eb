"""One arbiter per backend for the cluster contract suites, with a way to let time pass.

The in-memory arbiter runs on a manual clock that the test advances; the SQL arbiters run on
their database's clock, so passing time there means waiting until that clock has moved on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from andon.cluster.arbiter import Arbiter
from andon.storage.cluster_arbiter import SqlArbiter, open_sql_arbiter
from andon.testing.clock import ManualClock
from andon.testing.memory_arbiter import MemoryArbiter
from andon.testing.processes import wait_until

BACKENDS = ["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


class ArbiterHarness:
    def __init__(self, backend: str, url: str | None) -> None:
        self.backend = backend
        self.url = url
        self.clock = ManualClock()
        self._opened: list[Arbiter] = []
        self._memory: MemoryArbiter | None = None

    def arbiter(self, preferences: Mapping[str, Sequence[str]] | None = None) -> Arbiter:
        """An arbiter on the shared state; each call a separate connection pool (SQL)."""
        if self.url is None:
            # One in-memory state per test: every "connection" is the same object.
            if self._memory is None:
                self._memory = MemoryArbiter(preferences, clock=self.clock.now_ms)
            return self._memory
        opened: SqlArbiter = (
            open_sql_arbiter(self.url, preferences, timeout_ms=5_000)
            if not self._opened
            else SqlArbiter(self.url, preferences, timeout_ms=5_000)
        )
        self._opened.append(opened)
        return opened

    def pass_time(self, arbiter: Arbiter, ms: int) -> None:
        """Let at least ``ms`` of the arbiter's clock pass."""
        if self.url is None:
            self.clock.advance(ms / 1000)
            return
        target = arbiter.now_ms() + ms
        wait_until(lambda: arbiter.now_ms() >= target, ms / 1000 + 10, "arbiter clock stalled")

    def close(self) -> None:
        for opened in self._opened:
            opened.close()


def open_harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArbiterHarness]:
    """For a fixture parametrised with ``BACKENDS``."""
    url: str | None = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'arbiter.db'}"
    elif request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
    made = ArbiterHarness(request.param, url)
    yield made
    made.close()
