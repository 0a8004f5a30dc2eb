"""The historian writer with a fence, on the in-memory, SQLite and PostgreSQL stores: a passive
node writes nothing and spools everything in order; once promoted it drains the spool without
duplicating what the leader of the time wrote; a batch refused by the fence (FencedOut) commits
nothing, stays spooled and is written exactly once later."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from andon.cluster.model import FencingToken, Lease
from andon.storage.cluster_arbiter import SqlArbiter
from andon.storage.historian_writer import HistorianWriter
from andon.storage.migrate import upgrade_database
from andon.storage.store import HistorianStore, open_historian_store
from andon.storage.types import Sample
from andon.testing.memory_arbiter import MemoryArbiter
from andon.testing.memory_historian import InMemoryHistorianStore
from andon.testing.processes import wait_until

DOMAIN = "default"
TAG = "Plant1/Edge1/M1/speed"
T0 = 1_700_000_000_000
LONG = 600_000


@dataclass
class Rig:
    store: HistorianStore
    arbiter: Any  # MemoryArbiter | SqlArbiter
    spool_path: Path
    token: FencingToken | None = None  # what the fence answers (the runner's job in a node)
    writers: list[HistorianWriter] = field(default_factory=list)

    def fence(self) -> FencingToken | None:
        return self.token

    def writer(self) -> HistorianWriter:
        made = HistorianWriter(
            self.store,
            max_batch=50,
            max_batch_delay_s=0.001,
            retry_backoff_s=(0.001, 0.01),
            spool_path=self.spool_path,
            fence=self.fence,
        )
        made.start()
        self.writers.append(made)
        return made

    def lead(self, node: str = "a") -> Lease:
        lease = self.arbiter.try_acquire(DOMAIN, node, LONG)
        assert lease is not None
        if node == "a":
            self.token = FencingToken(DOMAIN, lease.epoch, node)
        return lease  # type: ignore[no-any-return]

    def stored(self) -> list[int]:
        return [s.ts_ms for s in self.store.history(TAG, 0, 2**62, limit=1_000_000)]


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    if request.param == "memory":
        arbiter: Any = MemoryArbiter()
        store: HistorianStore = InMemoryHistorianStore(arbiter=arbiter)
    else:
        url = (
            f"sqlite:///{tmp_path / 'andon.db'}"
            if request.param == "sqlite"
            else str(request.getfixturevalue("postgres_url"))
        )
        upgrade_database(url)
        arbiter = SqlArbiter(url, timeout_ms=10_000)
        store = open_historian_store(url)
    made = Rig(store, arbiter, tmp_path / "historian-spool.db")
    yield made
    for writer in made.writers:
        writer.stop(timeout=10)
    store.close()
    arbiter.close()


def _samples(start: int, count: int) -> list[Sample]:
    return [Sample(TAG, T0 + i, float(i), datatype=10) for i in range(start, start + count)]


def _submit(writer: HistorianWriter, start: int, count: int, chunk: int = 7) -> None:
    for first in range(start, start + count, chunk):
        assert writer.submit(_samples(first, min(chunk, start + count - first)), timeout=10)


def test_passive_spools_everything_then_promotion_drains_without_duplicates(rig: Rig) -> None:
    writer = rig.writer()
    _submit(writer, 0, 200)
    wait_until(
        lambda: writer.stats().spool_samples == 200 and writer.stats().queued == 0,
        10,
        lambda: f"not all spooled: {writer.stats()}",
    )
    stats = writer.stats()
    assert rig.stored() == []
    assert stats.fenced
    assert stats.committed_total == 0
    assert stats.failures_total == 0  # being passive is not a failure
    assert not writer.flush(timeout=0.2)  # nothing is committed while passive

    # Meanwhile the leader of the time stored the first half itself.
    assert rig.store.write_batch(_samples(0, 100)) == 100
    rig.lead()
    assert writer.flush(timeout=20)
    stats = writer.stats()
    assert rig.stored() == [T0 + i for i in range(200)]
    assert stats.inserted_total == 100  # no duplicates of what was already there
    assert stats.spool_samples == 0
    assert not stats.fenced


def test_a_fenced_out_batch_commits_nothing_and_is_written_once_later(rig: Rig) -> None:
    lease = rig.lead()
    writer = rig.writer()
    _submit(writer, 0, 60)
    assert writer.flush(timeout=20)
    assert rig.stored() == [T0 + i for i in range(60)]

    # Another node takes over; this node's fence has not noticed yet (stale token).
    assert rig.arbiter.release(DOMAIN, "a", lease.epoch)
    other = rig.lead("b")
    _submit(writer, 60, 40)
    wait_until(
        lambda: writer.stats().fenced_out_total >= 1 and writer.stats().spool_samples == 40,
        10,
        lambda: f"not fenced out and spooled: {writer.stats()}",
    )
    assert rig.stored() == [T0 + i for i in range(60)]  # nothing of the refused batch
    assert writer.stats().fenced
    rig.token = None  # the lease loop demoted this node
    _submit(writer, 100, 20)
    wait_until(lambda: writer.stats().spool_samples == 60, 10, "not spooled while passive")

    assert rig.arbiter.release(DOMAIN, "b", other.epoch)
    rig.lead()  # this node leads again, with a new epoch
    assert writer.flush(timeout=20)
    assert rig.stored() == [T0 + i for i in range(120)]
    assert writer.stats().inserted_total == 120  # each sample written exactly once
    assert not writer.stats().fenced


@dataclass
class RecordingDerived:
    """A derived write that records the fence it was written with."""

    rows: int = 3
    fences: list[FencingToken | None] = field(default_factory=list)
    written: threading.Event = field(default_factory=threading.Event)

    def merge(self, newer: Any) -> None:
        self.rows += newer.rows

    def write(self, fence: FencingToken | None = None) -> None:
        self.fences.append(fence)
        self.written.set()


def test_derived_writes_are_discarded_while_passive_and_fenced_while_leading(rig: Rig) -> None:
    writer = rig.writer()
    passive = RecordingDerived()
    assert writer.submit_derived(passive, timeout=10)
    assert writer.flush(timeout=10)
    assert passive.fences == []  # never written: the leader derives its own
    assert writer.stats().derived_discarded_total == 3
    assert writer.stats().derived_queued == 0

    rig.lead()
    leading = RecordingDerived()
    assert writer.submit_derived(leading, timeout=10)
    assert leading.written.wait(10)
    assert leading.fences == [rig.token]


def test_a_fence_needs_a_spool(rig: Rig) -> None:
    with pytest.raises(ValueError, match="spool_path"):
        HistorianWriter(rig.store, fence=rig.fence)
