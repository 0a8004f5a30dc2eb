"""Building and summing many ``TimeAccount``\\ s fast: a trend over a year holds one account per
hour (8,760), and a day of it is the sum of 24.

``TimeAccount`` is a frozen dataclass whose generated ``__init__`` stores each of its 18 fields
through ``object.__setattr__``; ``account_from_values`` stores them through the slots' own
setters instead, about twice as fast (1.3 against 2.7 µs per account in a micro-benchmark on a
loaded 2-core machine). ``sum_accounts`` sums column by column instead of building an
intermediate account per ``+``. Both give exactly what ``TimeAccount(*values)`` and adding one
by one give.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import fields
from operator import attrgetter
from typing import Any

from andon.domain.oee import SUMMED_FIELDS, TimeAccount, _merge_reasons

__all__ = ["account_from_values", "sum_accounts"]

_summed_values = attrgetter(*SUMMED_FIELDS)


def _build_account_from_values() -> Callable[..., TimeAccount]:
    """Generated the way dataclasses generates ``__init__``, so that it follows the fields."""
    names = [f.name for f in fields(TimeAccount)]
    namespace: dict[str, Any] = {"new": object.__new__, "cls": TimeAccount}
    namespace |= {f"set_{name}": TimeAccount.__dict__[name].__set__ for name in names}
    source = "\n".join(
        [
            f"def account_from_values({', '.join(SUMMED_FIELDS)}, loss_by_reason=()):",
            "    account = new(cls)",
            *(f"    set_{name}(account, {name})" for name in names),
            "    return account",
        ]
    )
    exec(source, namespace)  # the source holds the field names above and nothing else
    built: Callable[..., TimeAccount] = namespace["account_from_values"]
    return built


#: ``account_from_values(*values, loss_by_reason=())`` is ``TimeAccount(*values,
#: loss_by_reason)``, ``values`` in ``SUMMED_FIELDS`` order (positional only).
account_from_values = _build_account_from_values()
_PROBE = (*range(1, len(SUMMED_FIELDS) + 1), (("reason", 1),))
if account_from_values(*_PROBE) != TimeAccount(*_PROBE):
    raise ImportError("account_from_values no longer builds a TimeAccount")


def sum_accounts(accounts: Iterable[TimeAccount]) -> TimeAccount:
    """The sum of ``accounts`` (an empty account if there are none), equal to adding them one
    by one."""
    rows = []
    reasons: tuple[tuple[str, int], ...] = ()
    for account in accounts:
        rows.append(_summed_values(account))
        if account.loss_by_reason:
            reasons = _merge_reasons(reasons, account.loss_by_reason)
    if not rows:
        return TimeAccount()
    return account_from_values(*map(sum, zip(*rows, strict=True)), reasons)
