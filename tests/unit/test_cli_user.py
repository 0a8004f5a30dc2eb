"""``andon user``: add, list, passwd and token against a SQLite database named in a config."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from andon.cli.main import app
from andon.storage.users import UserRepository

PASSWORD = "cli-password-0123"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "server.toml"
    path.write_text(f'database_url = "sqlite:///{tmp_path / "andon.db"}"\n', encoding="utf-8")
    return path


def _run(config: Path, *args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["user", *args, "--config", str(config)], input=stdin)
    return result.exit_code, result.output


def _repo(config: Path) -> UserRepository:
    return UserRepository(f"sqlite:///{config.parent / 'andon.db'}")


def test_add_list_token_passwd(config: Path) -> None:
    code, out = _run(
        config, "add", "alice", "--role", "supervisor", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert code == 0, out
    assert "alice created with role supervisor" in out
    assert PASSWORD not in out

    code, out = _run(config, "list")
    assert code == 0
    assert out.split() == ["alice", "supervisor", "active", "alice"]

    code, out = _run(config, "token", "alice", "--ttl-days", "1")
    assert code == 0, out
    token = out.strip()
    repo = _repo(config)
    try:
        found = repo.user_for_token(token)
        assert found is not None
        assert found[0].username == "alice"

        code, out = _run(config, "passwd", "alice", "--password-stdin", stdin="new-" + PASSWORD)
        assert code == 0, out
        assert repo.user_for_token(token) is None  # a new password ends every token
        actions = [e.action for e in repo.audit.list(entity="user", entity_id="alice")]
        assert actions == ["user.password_changed", "user.created"]
        assert repo.audit.list()[0].username.startswith("cli")
    finally:
        repo.close()


def test_interactive_prompt_hides_and_confirms(config: Path) -> None:
    code, out = _run(config, "add", "bob", "--role", "operator", stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert code == 0, out
    assert PASSWORD not in out  # hidden input is not echoed


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["add", "Bad Name", "--role", "operator", "--password-stdin"], PASSWORD, "invalid"),
        (["add", "carol", "--role", "boss", "--password-stdin"], PASSWORD, "unknown role"),
        (["add", "carol", "--role", "operator", "--password-stdin"], "short", "shorter"),
        (["passwd", "ghost", "--password-stdin"], PASSWORD, "no user 'ghost'"),
        (["token", "ghost"], None, "no active user 'ghost'"),
    ],
)
def test_errors_are_one_clear_line(
    config: Path, args: list[str], stdin: str | None, message: str
) -> None:
    code, out = _run(config, *args, stdin=stdin)
    assert code == 2
    assert message in out
    assert "Traceback" not in out


def test_there_is_no_password_option(config: Path) -> None:
    code, _ = _run(config, "add", "dave", "--role", "operator", "--password", PASSWORD)
    assert code != 0
