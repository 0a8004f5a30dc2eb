"""Fencing at the storage layer on SQLite and PostgreSQL (checklist D: R-06, R-07).

A stale leader's write must fail in its own transaction and commit nothing, however closely it
follows the takeover; on PostgreSQL a takeover waits for an in-flight fenced transaction, and
that wait is bounded by the fenced transaction's statement timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from andon.cluster.model import FencedOut, FencingToken, Lease
from andon.domain import AssetPath, ProducedCount
from andon.storage.cluster_arbiter import SqlArbiter
from andon.storage.cluster_fencing import check_fence
from andon.storage.engine import create_engine_for
from andon.storage.mes import MesChanges, MesRepository
from andon.storage.migrate import upgrade_database
from andon.storage.sql_store import SqlHistorianStore
from andon.storage.store import open_historian_store
from andon.storage.types import Sample
from andon.testing.processes import wait_until
from andon.testing.tcp_proxy import TcpProxy

DOMAIN = "line1"
TAG = "Plant1/Edge1/M1/speed"
T0 = 1_700_000_000_000
RACE_TTL_MS = 150
RACE_ITERATIONS = 25


@pytest.fixture
def arbiter(migrated_url: str) -> Iterator[SqlArbiter]:
    made = SqlArbiter(migrated_url, timeout_ms=10_000)
    yield made
    made.close()


@pytest.fixture
def store(migrated_url: str) -> Iterator[SqlHistorianStore]:
    made = open_historian_store(migrated_url)
    assert isinstance(made, SqlHistorianStore)
    yield made
    made.close()


def _acquire(arbiter: SqlArbiter, node: str, ttl_ms: int) -> Lease:
    lease = wait_until(
        lambda: arbiter.try_acquire(DOMAIN, node, ttl_ms), 10, f"{node} never got the lease"
    )
    assert isinstance(lease, Lease)
    return lease


def _token(lease: Lease, timeout_ms: int = 1_000) -> FencingToken:
    assert lease.node is not None
    return FencingToken(lease.domain, lease.epoch, lease.node, timeout_ms)


def _stored(store: SqlHistorianStore, tag: str = TAG) -> set[int]:
    return {s.ts_ms for s in store.history(tag, 0, 2**62, limit=1_000_000)}


def test_the_holder_writes_and_a_stale_token_commits_nothing(
    arbiter: SqlArbiter, store: SqlHistorianStore, migrated_url: str
) -> None:
    old = _acquire(arbiter, "a", 60_000)
    assert store.write_batch([Sample(TAG, T0, 1.0)], fence=_token(old)) == 1
    assert arbiter.release(DOMAIN, "a", old.epoch)
    new = _acquire(arbiter, "b", 60_000)
    assert new.epoch == old.epoch + 1

    fresh_tag = "Plant1/Edge1/M1/new_tag"
    batch = [Sample(TAG, T0 + 1, 2.0), Sample(fresh_tag, T0 + 1, 3.0)]
    with pytest.raises(FencedOut, match=r"now b's, epoch 2"):
        store.write_batch(batch, fence=_token(old))
    assert _stored(store) == {T0}
    assert fresh_tag not in {t.tag for t in store.tags()}  # not even the tag row

    asset = AssetPath.parse("Site/Area/Line1/M1")
    changes = MesChanges()
    changes.counts[(str(asset), T0)] = ProducedCount(asset, T0, total=5)
    repository = MesRepository(migrated_url)
    try:
        with pytest.raises(FencedOut):
            repository.write_changes(changes, fence=_token(old))
        assert repository.counts(asset, 0, 2**62) == []
        repository.write_changes(changes, fence=_token(new))
        assert [c.total for c in repository.counts(asset, 0, 2**62)] == [5]
    finally:
        repository.close()


def test_an_expired_lease_fences_and_a_missing_one_says_why(
    arbiter: SqlArbiter, store: SqlHistorianStore
) -> None:
    held = _acquire(arbiter, "a", 300)
    expires = held.expires_at_ms
    wait_until(lambda: arbiter.now_ms() > expires, 10, "arbiter clock stalled")
    with pytest.raises(FencedOut, match="expired"):
        store.write_batch([Sample(TAG, T0, 1.0)], fence=_token(held))
    stray = FencingToken("no-such-domain", 1, "a")
    with pytest.raises(FencedOut, match="no lease row"):
        store.write_batch([Sample(TAG, T0, 1.0)], fence=stray)
    assert store.count() == 0


@dataclass
class _Round:
    """One takeover race: what the stale leader committed and had refused."""

    first_ts: int
    next_ts: int
    committed: list[int] = field(default_factory=list)
    refused_after_takeover: list[int] = field(default_factory=list)
    seen_at_takeover: set[int] = field(default_factory=set)


def _race_round(
    arbiter: SqlArbiter,
    contender: SqlArbiter,
    store: SqlHistorianStore,
    nodes: tuple[str, str],
    first_ts: int,
) -> _Round:
    old_node, new_node = nodes
    old = _acquire(arbiter, old_node, RACE_TTL_MS)
    token = _token(old)
    result = _Round(first_ts, first_ts)
    took_over = threading.Event()

    def stale_leader() -> None:
        after = 0
        while after < 3:  # goes on until three writes were issued after the takeover
            issued_after = took_over.is_set()
            ts = result.next_ts
            result.next_ts += 1
            try:
                store.write_batch([Sample(TAG, ts, float(ts - T0))], fence=token)
            except FencedOut:
                if issued_after:
                    result.refused_after_takeover.append(ts)
            else:
                result.committed.append(ts)
            after += issued_after

    def new_leader() -> None:
        wait_until(lambda: arbiter.now_ms() >= old.expires_at_ms, 10, "clock stalled")
        taken = _acquire(contender, new_node, 60_000)
        assert taken.epoch == old.epoch + 1
        result.seen_at_takeover.update(t for t in _stored(store) if t >= first_ts)
        took_over.set()

    threads = [threading.Thread(target=stale_leader), threading.Thread(target=new_leader)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    # Hand the lease back for the next round.
    held = next(x for x in contender.leases() if x.domain == DOMAIN)
    assert contender.release(DOMAIN, new_node, held.epoch)
    return result


def test_stale_epoch_writes_never_commit_after_a_takeover(
    arbiter: SqlArbiter, store: SqlHistorianStore, migrated_url: str
) -> None:
    """R-06: a stale leader writes in a loop while another node takes over the moment the lease
    expires. Every write of the stale leader either committed before the takeover (the new
    leader sees it right after taking over) or failed with FencedOut and left nothing."""
    contender = SqlArbiter(migrated_url, timeout_ms=10_000)
    next_ts = T0
    committed_total = 0
    try:
        for iteration in range(RACE_ITERATIONS):
            nodes = ("a", "b") if iteration % 2 == 0 else ("b", "a")
            race = _race_round(arbiter, contender, store, nodes, next_ts)
            next_ts = race.next_ts
            final = {t for t in _stored(store) if t >= race.first_ts}
            assert final == set(race.committed), "a refused write left data, or a commit is lost"
            assert final == race.seen_at_takeover, "a stale write committed after the takeover"
            assert len(race.refused_after_takeover) == 3
            committed_total += len(race.committed)
    finally:
        contender.close()
    assert committed_total > 0, "the stale leader never wrote while it still led"


@pytest.mark.postgres
def test_a_takeover_waits_for_an_in_flight_fenced_write(postgres_url: str) -> None:
    """R-07: the fenced transaction's row lock holds the takeover until it commits."""
    upgrade_database(postgres_url)
    arbiter = SqlArbiter(postgres_url, timeout_ms=20_000)
    engine = create_engine_for(postgres_url)
    taken: list[Lease | None] = []
    try:
        old = _acquire(arbiter, "a", 300)
        with engine.connect() as connection, connection.begin():
            check_fence(connection, _token(old, timeout_ms=20_000))
            connection.execute(
                sa.text("INSERT INTO tag (path, datatype, created_at) VALUES ('x', 10, 0)")
            )
            wait_until(lambda: arbiter.now_ms() > old.expires_at_ms, 10, "clock stalled")
            contender = threading.Thread(
                target=lambda: taken.append(arbiter.try_acquire(DOMAIN, "b", 60_000))
            )
            contender.start()
            _wait_for_lock_waiter(engine)
            assert not taken, "the takeover did not wait for the fenced transaction"
            last_ms = connection.execute(sa.text(_NOW_SQL)).scalar_one()
        contender.join(timeout=30)
        assert len(taken) == 1
        lease = taken[0]
        assert lease is not None
        assert lease.epoch == old.epoch + 1
        assert lease.acquired_at_ms >= last_ms  # after the fenced commit
    finally:
        engine.dispose()
        arbiter.close()


@pytest.mark.postgres
def test_the_wait_for_a_fenced_write_is_bounded_by_its_statement_timeout(
    postgres_url: str,
) -> None:
    """R-07: a fenced transaction stuck in a long statement is cancelled at its timeout,
    commits nothing, and the waiting takeover then goes through."""
    upgrade_database(postgres_url)
    arbiter = SqlArbiter(postgres_url, timeout_ms=20_000)
    engine = create_engine_for(postgres_url)
    fence_timeout_ms = 1_500
    taken: list[Lease | None] = []
    stuck_error: list[BaseException] = []
    checked = threading.Event()
    try:
        old = _acquire(arbiter, "a", 300)
        started_ms = arbiter.now_ms()

        def stuck_writer() -> None:
            try:
                with engine.connect() as connection, connection.begin():
                    check_fence(connection, _token(old, timeout_ms=fence_timeout_ms))
                    connection.execute(sa.text(
                        "INSERT INTO tag (path, datatype, created_at) VALUES ('stuck', 10, 0)"
                    ))  # fmt: skip
                    checked.set()
                    connection.execute(sa.text("SELECT pg_sleep(60)"))
            except BaseException as error:
                stuck_error.append(error)

        writer = threading.Thread(target=stuck_writer)
        writer.start()
        assert checked.wait(10)
        wait_until(lambda: arbiter.now_ms() > old.expires_at_ms, 10, "clock stalled")
        contender = threading.Thread(
            target=lambda: taken.append(arbiter.try_acquire(DOMAIN, "b", 60_000))
        )
        contender.start()
        writer.join(timeout=30)
        contender.join(timeout=30)
        assert len(stuck_error) == 1
        assert isinstance(stuck_error[0], OperationalError)
        assert "statement timeout" in str(stuck_error[0])
        lease = taken[0]
        assert lease is not None
        assert lease.epoch == old.epoch + 1
        waited_ms = lease.acquired_at_ms - started_ms
        assert fence_timeout_ms - 200 <= waited_ms < 30_000
        with engine.connect() as connection:
            paths = connection.execute(sa.text("SELECT path FROM tag")).scalars().all()
        assert "stuck" not in paths
    finally:
        engine.dispose()
        arbiter.close()


@pytest.mark.postgres
def test_a_leader_cut_off_mid_copy_does_not_hold_up_the_takeover(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R-04: the link to the leader goes silent while its historian batch is being copied.
    PostgreSQL does not time out a COPY whose client went silent, so the batch's transaction
    must hold nothing a takeover needs (it once held the lease row, and the standby never took
    over). When the link comes back, the stale batch commits nothing."""
    upgrade_database(postgres_url)
    url = make_url(postgres_url)
    with (
        closing(SqlArbiter(postgres_url, timeout_ms=2_000)) as arbiter,
        TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy,
        closing(
            open_historian_store(url.set(port=proxy.port).render_as_string(hide_password=False))
        ) as store,
    ):
        assert isinstance(store, SqlHistorianStore)
        _cut_off_mid_copy(arbiter, proxy, store, monkeypatch)


def _cut_off_mid_copy(
    arbiter: SqlArbiter,
    proxy: TcpProxy,
    store: SqlHistorianStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    copying = threading.Event()
    outcome: list[BaseException | int] = []
    real_write_row = psycopg.Copy.write_row

    def cut_then_write_row(self: psycopg.Copy, row: Sequence[Any]) -> None:
        if not copying.is_set():
            proxy.pause()  # the COPY has begun: nothing more reaches the database
            copying.set()
        real_write_row(self, row)

    def leader_batch() -> None:
        try:
            outcome.append(store.write_batch([Sample(TAG, T0 + 1, 2.0)], fence=_token(old)))
        except BaseException as error:
            outcome.append(error)

    try:
        old = _acquire(arbiter, "a", 1_000)
        assert store.write_batch([Sample(TAG, T0, 1.0)], fence=_token(old)) == 1
        monkeypatch.setattr(psycopg.Copy, "write_row", cut_then_write_row)
        leader = threading.Thread(target=leader_batch, daemon=True)
        leader.start()
        assert copying.wait(10), "the batch never reached its COPY"
        # Each attempt waits at most the arbiter's 2 s for the lease row: before the fix every
        # attempt timed out on the stuck transaction's lock (ArbiterError).
        new = _acquire(arbiter, "b", 60_000)
        assert new.epoch == old.epoch + 1
        proxy.resume()
        leader.join(timeout=30)
        assert not leader.is_alive(), "the cut-off batch never finished after the link returned"
        assert len(outcome) == 1
        # Fenced out at the lease check, or cancelled by the statement timeout that fired while
        # the COPY waited: either way rolled back.
        assert isinstance(outcome[0], FencedOut | sa.exc.DBAPIError), outcome
        monkeypatch.undo()
        assert _stored(store) == {T0}
    finally:
        proxy.resume()


_NOW_SQL = "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"


def _wait_for_lock_waiter(engine: sa.Engine) -> None:
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )

    def waiting() -> bool:
        with engine.connect() as connection:
            return bool(connection.execute(query).scalar_one())

    wait_until(waiting, 10, "no transaction ever waited for the lease row lock")
