"""UserRepository and AuditLog: the same behaviour on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from andon.domain.errors import DomainError
from andon.domain.users import Role
from andon.storage.audit import AuditLog
from andon.storage.migrate import upgrade_database
from andon.storage.schema import api_token_table
from andon.storage.users import LAST_USED_RESOLUTION_MS, UserRepository

T0 = 1_767_225_600_000
HASH = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$notarealhashbutopaque"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'andon.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    upgrade_database(url)
    return url


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def repo(database_url: str, clock: Clock) -> Iterator[UserRepository]:
    repository = UserRepository(database_url, clock=clock)
    yield repository
    repository.close()


def test_add_get_list_users(repo: UserRepository) -> None:
    alice = repo.add_user("alice", HASH, Role.SUPERVISOR, "Alice A.")
    repo.add_user("bob", HASH, Role.OPERATOR)
    assert alice.id > 0
    assert repo.get_user("alice") == alice
    assert alice.display_name == "Alice A."
    assert alice.created_at_ms == T0
    assert repo.get_user("nobody") is None
    assert [u.username for u in repo.list_users()] == ["alice", "bob"]
    assert repo.get_user("bob").display_name == "bob"  # type: ignore[union-attr]
    assert repo.count_users() == 2
    found = repo.password_hash("alice")
    assert found is not None
    assert found[1] == HASH


def test_duplicate_username_is_a_domain_error(repo: UserRepository) -> None:
    repo.add_user("alice", HASH, Role.OPERATOR)
    with pytest.raises(DomainError, match="already exists"):
        repo.add_user("alice", HASH, Role.ADMIN)
    assert repo.count_users() == 1


def test_set_role_password_disable(repo: UserRepository) -> None:
    repo.add_user("alice", HASH, Role.OPERATOR)
    assert repo.set_role("alice", Role.ENGINEER).role is Role.ENGINEER
    repo.set_password("alice", "other-hash")
    assert repo.password_hash("alice")[1] == "other-hash"  # type: ignore[index]
    assert repo.disable("alice").disabled is True
    assert repo.disable("alice", False).disabled is False
    with pytest.raises(DomainError, match="no user 'ghost'"):
        repo.set_role("ghost", Role.ADMIN)


def test_token_is_stored_only_as_its_sha256(repo: UserRepository, database_url: str) -> None:
    alice = repo.add_user("alice", HASH, Role.OPERATOR)
    token, expires = repo.issue_token(alice, "api", 60_000)
    assert expires == T0 + 60_000
    assert len(token) >= 43  # 32 random bytes, URL-safe base64
    with repo.engine.connect() as connection:
        stored = connection.execute(sa.select(api_token_table)).mappings().one()
    assert stored["token_sha256"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(dict(stored))
    assert stored["kind"] == "api"
    found = repo.user_for_token(token)
    assert found is not None
    assert found[0].username == "alice"
    assert found[1] == expires
    assert repo.user_for_token(token + "x") is None


def test_expired_token_and_disabled_user_are_refused(repo: UserRepository, clock: Clock) -> None:
    alice = repo.add_user("alice", HASH, Role.OPERATOR)
    bob = repo.add_user("bob", HASH, Role.OPERATOR)
    short, _ = repo.issue_token(alice, "session", 1000)
    long_, _ = repo.issue_token(bob, "api", 10**9)
    clock.now += 999
    assert repo.user_for_token(short) is not None
    clock.now += 1
    assert repo.user_for_token(short) is None
    repo.disable("bob")
    assert repo.user_for_token(long_) is None
    repo.disable("bob", False)
    assert repo.user_for_token(long_) is not None
    assert repo.purge_expired() == 1


def test_last_used_is_written_at_most_once_a_minute(repo: UserRepository, clock: Clock) -> None:
    alice = repo.add_user("alice", HASH, Role.OPERATOR)
    token, _ = repo.issue_token(alice, "api", 10**9)

    def last_used() -> int | None:
        with repo.engine.connect() as connection:
            value = connection.execute(sa.select(api_token_table.c.last_used_ms)).scalar_one()
            return None if value is None else int(value)

    assert last_used() is None
    repo.user_for_token(token)
    assert last_used() == T0
    clock.now += LAST_USED_RESOLUTION_MS - 1
    repo.user_for_token(token)
    assert last_used() == T0
    clock.now += 1
    repo.user_for_token(token)
    assert last_used() == T0 + LAST_USED_RESOLUTION_MS


def test_a_token_check_survives_another_writer_committing_meanwhile(
    repo: UserRepository, database_url: str
) -> None:
    """Another connection (the historian writer, in a server) commits between the token's read
    and its last-used write: the check still answers instead of "database is locked"."""
    alice = repo.add_user("alice", HASH, Role.OPERATOR)
    token, _ = repo.issue_token(alice, "api", 10**9)
    other = sa.create_engine(database_url)
    done: list[bool] = []

    def commit_elsewhere(connection: sa.Connection, clause: object, *args: object) -> None:
        if not done and isinstance(clause, sa.Select):
            done.append(True)
            with other.begin() as writer:
                writer.execute(sa.text("CREATE TABLE IF NOT EXISTS other_writer (x INTEGER)"))

    sa.event.listen(repo.engine, "after_execute", commit_elsewhere)
    try:
        found = repo.user_for_token(token)
    finally:
        sa.event.remove(repo.engine, "after_execute", commit_elsewhere)
        other.dispose()
    assert done
    assert found is not None
    assert found[0].username == "alice"


def test_revoke_token_and_all(repo: UserRepository) -> None:
    alice = repo.add_user("alice", HASH, Role.OPERATOR)
    first, _ = repo.issue_token(alice, "api", 10**9)
    second, _ = repo.issue_token(alice, "session", 10**9)
    assert repo.revoke_token(first) is True
    assert repo.revoke_token(first) is False
    assert repo.user_for_token(first) is None
    assert repo.user_for_token(second) is not None
    assert repo.revoke_all("alice") == 1
    assert repo.user_for_token(second) is None


def test_changes_with_an_actor_are_audited_without_the_hash(repo: UserRepository) -> None:
    repo.add_user("alice", HASH, Role.OPERATOR, actor="root", comment="new hire")
    repo.set_role("alice", Role.SUPERVISOR, actor="root", comment="promoted")
    repo.set_password("alice", "new-hash", actor="root")
    repo.disable("alice", actor="root", comment="left")
    repo.add_user("bob", HASH, Role.OPERATOR)  # no actor: not audited
    entries = repo.audit.list(entity="user", entity_id="alice")
    assert [e.action for e in entries] == [
        "user.disabled",
        "user.password_changed",
        "user.role_changed",
        "user.created",
    ]
    created = entries[-1]
    assert (created.username, created.before, created.comment) == ("root", None, "new hire")
    assert created.after == {
        "username": "alice",
        "role": "operator",
        "display_name": "alice",
        "disabled": False,
    }
    assert entries[2].before["role"] == "operator"
    assert entries[2].after["role"] == "supervisor"
    assert all(e.at_ms == T0 for e in entries)
    for entry in entries:
        text = repr(entry)
        assert HASH not in text
        assert "new-hash" not in text
        assert "password_hash" not in text
    assert repo.audit.list(entity="user", entity_id="bob") == []


def test_audit_record_joins_the_callers_transaction(database_url: str) -> None:
    audit = AuditLog(database_url)
    try:
        with audit.engine.connect() as connection, connection.begin() as transaction:
            audit.record(
                "x", "thing.changed", "thing", "1", {"a": 1}, {"a": 2}, connection=connection
            )
            transaction.rollback()
        assert audit.list() == []
        entry_id = audit.record("x", "thing.changed", "thing", "1", {"a": 1}, {"a": 2}, "why")
        audit.record("x", "other.changed", "other", "9", None, {"b": [1, 2]})
        entries = audit.list(entity="thing")
        assert [(e.id, e.before, e.after, e.comment) for e in entries] == [
            (entry_id, {"a": 1}, {"a": 2}, "why")
        ]
        assert [e.entity for e in audit.list()] == ["other", "thing"]  # newest first
        assert len(audit.list(limit=1)) == 1
    finally:
        audit.close()


def test_failed_change_writes_no_audit_entry(repo: UserRepository) -> None:
    repo.add_user("alice", HASH, Role.OPERATOR, actor="root")
    with pytest.raises(DomainError):
        repo.add_user("alice", HASH, Role.OPERATOR, actor="root")
    assert len(repo.audit.list(entity="user")) == 1
