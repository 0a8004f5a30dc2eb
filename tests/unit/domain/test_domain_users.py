"""Roles and the rules for usernames and passwords (pure)."""

from __future__ import annotations

import pytest

from andon.domain.errors import DomainError
from andon.domain.users import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    Role,
    validate_password,
    validate_username,
)


def test_roles_are_ordered_and_each_includes_the_ones_below() -> None:
    assert Role.OPERATOR < Role.SUPERVISOR < Role.ENGINEER < Role.ADMIN
    assert sorted(Role, reverse=True)[0] is Role.ADMIN
    for lower_index, lower in enumerate(Role):
        for higher in list(Role)[lower_index:]:
            assert higher.allows(lower)
        for higher in list(Role)[lower_index + 1 :]:
            assert not lower.allows(higher)


def test_role_parse_is_forgiving_about_case_and_clear_when_wrong() -> None:
    assert Role.parse(" Supervisor ") is Role.SUPERVISOR
    with pytest.raises(DomainError, match="unknown role 'boss' \\(one of: operator, supervisor"):
        Role.parse("boss")


@pytest.mark.parametrize("name", ["alice", "a", "line-1.op_2", "0perator", "x" * 64])
def test_valid_usernames(name: str) -> None:
    assert validate_username(name) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "empty"),
        ("Alice", "invalid username"),
        ("al ice", "invalid username"),
        ("-alice", "invalid username"),
        ("alice@plant", "invalid username"),
        ("x" * 65, "longer than 64"),
    ],
)
def test_invalid_usernames(name: str, message: str) -> None:
    with pytest.raises(DomainError, match=message):
        validate_username(name)


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("x" * (MIN_PASSWORD_LENGTH - 1), "shorter than"),
        ("x" * (MAX_PASSWORD_LENGTH + 1), "longer than"),
        (" padded-password", "white space"),
        ("longusername", "equals the username"),
    ],
)
def test_invalid_passwords_never_echo_the_password(password: str, message: str) -> None:
    with pytest.raises(DomainError, match=message) as info:
        validate_password(password, "longusername")
    assert password.strip() not in str(info.value)


def test_valid_password() -> None:
    assert validate_password("x" * MIN_PASSWORD_LENGTH, "alice") == "x" * MIN_PASSWORD_LENGTH
