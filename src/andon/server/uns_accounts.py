"""The accounts the UNS documents carry: each asset's current shift (or local day) so far, for
many assets at once.

The figure is ``MesQueries.total(asset, start, now)``, read another way. That query sums the
stored hour rollups of the whole hours and computes the running hour from its stored records:
an hour into it, 3,600 counts per asset, for every document, every few seconds. Here the period
is read as its stored buckets *including the running one* -- the shift's bucket, or the day's
hours -- less what those buckets hold after ``end`` (= now: intervals that closed after now and
counts stamped ahead of the server's clock, normally nothing), plus the open interval up to now.
A bucket holds exactly the contributions of the stored records inside it
(``andon.domain.rollups``: additive and exact, the same invariant the whole hours of the query
rely on), so the two give the same account; one query per group of assets reads them all.

A period this cannot read that way -- a day that does not start on a local hour, a running hour
cut by a change of UTC offset, a shift bucket that does not end where the shift does (the
calendar changed since it was written), records the domain refuses -- is computed by
``MesQueries.total`` as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter

from andon.domain import (
    AssetPath,
    DomainError,
    ShiftCalendar,
    ShiftInstance,
    StateInterval,
    TimeAccount,
    account_for,
    hour_bucket_start,
)
from andon.domain.calendar import hour_bucket
from andon.domain.counts import CountRecord
from andon.domain.oee import SUMMED_FIELDS, calendar_segments, interval_contribution
from andon.server.mes_queries import MesQueries
from andon.storage.mes_period import PeriodReads

__all__ = ["Period", "PeriodAccounts"]

_NOTHING = TimeAccount()
_values = attrgetter(*SUMMED_FIELDS)
_NO_DATA = SUMMED_FIELDS.index("no_data_ms")
#: Shift periods remembered as alone (a few per calendar and day: cleared when full).
_ALONE_LIMIT = 64


def _no_data(account: TimeAccount, no_data_ms: int) -> TimeAccount:
    """``account`` with that no-data time (built positionally: ``dataclasses.replace`` was a
    third of the cost)."""
    if account.no_data_ms == no_data_ms:
        return account
    values = list(_values(account))
    values[_NO_DATA] = no_data_ms
    return TimeAccount(*values, account.loss_by_reason)  # type: ignore[call-arg]


@dataclass(frozen=True, slots=True)
class Period:
    """What "this shift" is for an asset now: a shift instance (``label`` its key) or, without
    a shift running, the local day (``label`` None)."""

    start_ms: int
    end_ms: int
    label: str | None


@dataclass(frozen=True, slots=True)
class _Plan:
    """How one asset's period is read: the ``kind`` buckets starting in [rows_from, rows_to),
    which end at ``until_ms`` (a shift bucket must end there: ``shift_end``)."""

    kind: str
    rows_from: int
    rows_to: int
    until_ms: int
    shift_end: int | None


class PeriodAccounts:
    def __init__(self, queries: MesQueries) -> None:
        self._queries = queries
        self._service = queries.service
        self._reads = PeriodReads(self._service.repository.engine)
        self._leaves: dict[AssetPath, list[AssetPath]] = {}
        # A shift period no other shift overlaps: every part of it has that one shift, which
        # the open interval's part then need not look up per asset (the current period only).
        self._alone: dict[
            tuple[int, Period], tuple[ShiftCalendar, tuple[ShiftInstance, ...] | None]
        ] = {}

    def leaves(self, asset: AssetPath) -> list[AssetPath]:
        """``MesQueries.leaves``, kept (the plant does not change while the server runs)."""
        found = self._leaves.get(asset)
        if found is None:
            found = self._leaves[asset] = self._queries.leaves(asset)
        return found

    def period(self, asset: AssetPath, now: int) -> Period:
        return Period(*self._queries.current_period(asset, now))

    def totals(
        self, assets: Sequence[AssetPath], now: int
    ) -> dict[AssetPath, tuple[Period, TimeAccount]]:
        """Each asset's period at ``now`` and its account from the period's start to
        ``max(now, start + 1)``: ``MesQueries.total`` over it."""
        periods = {asset: self.period(asset, now) for asset in assets}
        by_period: dict[Period, dict[AssetPath, None]] = {}
        for asset, period in periods.items():
            by_period.setdefault(period, {}).update(dict.fromkeys(self.leaves(asset)))
        accounts: dict[tuple[Period, AssetPath], TimeAccount] = {}
        for period, leaves in by_period.items():
            for leaf, account in self._accounts(list(leaves), period, now).items():
                accounts[(period, leaf)] = account
        found: dict[AssetPath, tuple[Period, TimeAccount]] = {}
        for asset, period in periods.items():
            total = TimeAccount()
            for leaf in self.leaves(asset):
                part = accounts.get((period, leaf))
                if part is None:
                    end = max(now, period.start_ms + 1)
                    total = self._queries.total(asset, period.start_ms, end)
                    break
                total += part
            found[asset] = (period, total)
        return found

    # -- one period, many assets ------------------------------------------------------------------
    def _accounts(
        self, leaves: list[AssetPath], period: Period, now: int
    ) -> dict[AssetPath, TimeAccount]:
        """``MesQueries.account`` of each leaf this can read (see the module); the others are
        left out."""
        end = max(now, period.start_ms + 1)
        plans: dict[_Plan, list[AssetPath]] = {}
        for leaf in leaves:
            plan = self._plan(leaf, period, end)
            if plan is not None:
                plans.setdefault(plan, []).append(leaf)
        found: dict[AssetPath, TimeAccount] = {}
        for plan, members in plans.items():
            sums = self._reads.rollup_sums(members, plan.kind, plan.rows_from, plan.rows_to)
            ahead = self._reads.counts(members, end, plan.until_ms) if end < plan.until_ms else {}
            for leaf in members:
                stored, bucket_end = sums.get(leaf, (_NOTHING, None))
                if plan.shift_end is not None and bucket_end not in (None, plan.shift_end):
                    continue
                current = self._service.current(leaf)
                after = self._after(leaf, current, end, plan.until_ms, ahead.get(leaf, []))
                if after is None:
                    continue
                total = stored if after is _NOTHING else _no_data(stored - after, 0)
                total += self._open_part(leaf, current, period, end, now)
                covered = total.all_time_ms - total.no_data_ms
                found[leaf] = _no_data(total, end - period.start_ms - covered)
        return found

    def _plan(self, leaf: AssetPath, period: Period, end: int) -> _Plan | None:
        if period.label is not None:  # the shift's own bucket
            start = period.start_ms
            calendar = self._service.calendar_for(leaf)
            if calendar is None or self._alone_in(calendar, period) is None:
                return None  # shifts that overlap: the query says what it says about them
            return _Plan("shift", start, start + 1, period.end_ms, period.end_ms)
        zone = self._service.zone_for(leaf)
        if hour_bucket_start(period.start_ms, zone) != period.start_ms:
            return None
        last, until = hour_bucket(end, zone)
        if last == end:
            return _Plan("hour", period.start_ms, end, end, None)
        # The running hour's bucket, as the rollups keep it (30 or 90 minutes around a
        # half-hour clock change).
        return _Plan("hour", period.start_ms, until, until, None)

    def _alone_in(
        self, calendar: ShiftCalendar, period: Period
    ) -> tuple[ShiftInstance, ...] | None:
        """``(shift,)`` when the period is a shift no other shift overlaps (then that is every
        part's ``shifts_between``), else None; remembered."""
        key = (id(calendar), period)
        known = self._alone.get(key)
        if known is not None and known[0] is calendar:
            return known[1]
        try:
            shifts = calendar.shifts_between(period.start_ms, period.end_ms)
        except DomainError:  # shifts that overlap
            shifts = ()
        alone = None
        if len(shifts) == 1 and (shifts[0].start_ms, shifts[0].end_ms) == (
            period.start_ms,
            period.end_ms,
        ):
            alone = shifts
        if len(self._alone) >= _ALONE_LIMIT:
            self._alone.clear()  # the periods of the past are not asked again
        self._alone[key] = (calendar, alone)
        return alone

    def _after(
        self,
        leaf: AssetPath,
        current: StateInterval | None,
        end: int,
        until: int,
        counts: list[CountRecord],
    ) -> TimeAccount | None:
        """What the stored records add in [end, until): ``MesQueries._direct`` over it. With
        the open interval starting at or before ``end``, no interval closes after it; else
        (a state stamped ahead of the server's clock, normally none) the closed intervals are
        the service's: the database's, the writer flushed (the open interval is read from the
        service too)."""
        closed: list[StateInterval] = []
        if current is None or current.end_ms is not None or current.start_ms > end:
            closed = [iv for iv in self._service.overlapping(leaf, end, until) if iv.end_ms]
        if not closed and not counts:
            return _NOTHING
        service = self._service
        calendar = service.calendar_for(leaf)
        try:
            return account_for(
                closed, counts, end, until,
                shifts=None if calendar is None else calendar.shifts_between(end, until),
                ideal_cycle_ms=service.cycle_time_ms,
                small_stop_ms=service.small_stop_ms,
            )  # fmt: skip
        except DomainError:
            return None  # records the domain refuses: the query says what it says about them

    def _open_part(
        self, leaf: AssetPath, current: StateInterval | None, period: Period, end: int, now: int
    ) -> TimeAccount:
        """``MesQueries._open_part``: the open interval, never rolled up, up to now."""
        if current is None or current.end_ms is not None:
            return _NOTHING
        a, b = max(period.start_ms, current.start_ms), min(end, now)
        if b <= a:
            return _NOTHING
        calendar = self._service.calendar_for(leaf)
        shifts: tuple[ShiftInstance, ...] | None = None
        if calendar is not None:
            alone = self._alone_in(calendar, period) if period.label is not None else None
            shifts = alone if alone is not None else calendar.shifts_between(a, b)
        # ``account_for([current], [], a, b, ...)`` less its no-data time: one interval's part.
        segments = calendar_segments(shifts, a, b)
        return interval_contribution(current, segments, self._service.small_stop_ms)
