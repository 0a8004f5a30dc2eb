"""The fast builders of trends: ``account_from_values`` is ``TimeAccount(*values)`` and
``sum_accounts`` (the column-wise sum a trend's days use) equals adding one by one."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from andon.domain import TimeAccount
from andon.domain.account_sums import account_from_values, sum_accounts
from andon.domain.oee import SUMMED_FIELDS

# Signed values and reasons that cancel out: count edits and reverts add negative accounts.
reasons = st.lists(
    st.tuples(st.sampled_from(["", "jam", "line", "setup"]), st.integers(-5, 5)), max_size=4
).map(lambda pairs: tuple(sorted({k: v for k, v in pairs if v}.items())))
accounts = st.builds(
    lambda values, losses: TimeAccount(*values, losses),  # type: ignore[misc]
    st.lists(
        st.integers(-(2**40), 2**40), min_size=len(SUMMED_FIELDS), max_size=len(SUMMED_FIELDS)
    ),
    reasons,
)


@settings(max_examples=100, deadline=None)
@given(accounts)
def test_account_from_values_is_the_dataclass(account: TimeAccount) -> None:
    values = [getattr(account, name) for name in SUMMED_FIELDS]
    built = account_from_values(*values, account.loss_by_reason)
    assert built == account
    assert hash(built) == hash(account)
    assert account_from_values(*values) == dataclasses.replace(account, loss_by_reason=())
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.running_ms = 1  # type: ignore[misc]


@settings(max_examples=200, deadline=None)
@given(st.lists(accounts, max_size=30))
def test_sum_accounts_equals_adding_one_by_one(parts: list[TimeAccount]) -> None:
    expected = TimeAccount()
    for part in parts:
        expected += part
    assert sum_accounts(parts) == expected
    assert sum_accounts(iter(parts)) == sum(parts, TimeAccount())


def test_sum_of_nothing_is_the_empty_account() -> None:
    assert sum_accounts([]) == TimeAccount()
    cancelled = sum_accounts([TimeAccount(loss_by_reason=(("jam", 3),)),
                              TimeAccount(loss_by_reason=(("jam", -3),))])  # fmt: skip
    assert cancelled.loss_by_reason == ()
