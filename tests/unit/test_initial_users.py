"""Users created without a UI: ``initial_admin_password`` (containers) and the demo's users."""

from __future__ import annotations

from pathlib import Path

from andon.demo import DEMO_USERS, ensure_demo_users, read_credentials
from andon.domain.users import Role
from andon.testing.auth import user_service_for_tests


def test_initial_admin_is_created_only_on_an_empty_database(tmp_path: Path) -> None:
    users = user_service_for_tests(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        assert users.ensure_initial_admin("first-password-123") is True
        assert users.ensure_initial_admin("second-password-123") is False
        admin = users.authenticate("admin", "first-password-123")
        assert admin.role is Role.ADMIN
        (entry,) = users.audit.list(entity="user", entity_id="admin")
        assert (entry.username, entry.comment) == ("system", "initial_admin_password")
        assert "first-password" not in repr(entry)
    finally:
        users.repository.close()


def test_demo_users_are_made_once_and_their_passwords_kept_private(tmp_path: Path) -> None:
    users = user_service_for_tests(f"sqlite:///{tmp_path / 'a.db'}")
    path = tmp_path / "credentials.txt"
    try:
        first = ensure_demo_users(users, path)
        assert [name for name, _ in first] == [name for name, _ in DEMO_USERS]
        assert path.stat().st_mode & 0o777 == 0o600
        assert read_credentials(path) == dict(first)
        for name, password in first:
            assert users.authenticate(name, password).role is dict(DEMO_USERS)[name]
        assert ensure_demo_users(users, path) == first  # a later run reuses them

        path.unlink()  # lost file, users kept: new passwords, so the banner stays true
        renewed = ensure_demo_users(users, path)
        assert dict(renewed) != dict(first)
        for name, password in renewed:
            users.authenticate(name, password)
    finally:
        users.repository.close()
