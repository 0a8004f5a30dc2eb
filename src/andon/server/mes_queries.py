"""Read side of the MES: asset states, intervals, OEE accounts and Pareto, from the stored
rollups plus the live tail.

An account over [start, end) of one asset is the sum of the stored hour rollups of the whole
local hours inside, the edges (partial hours) computed from the stored intervals and counts with
``oee.account_for``, and the open interval (never rolled up) from the service's memory, cut at
now. A line or a site is the sum of its assets' accounts; ratios come from the sums.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta

from andon.domain import (
    AssetPath,
    BucketKind,
    ParetoRow,
    ShiftInstance,
    StateInterval,
    TimeAccount,
    account_for,
    day_boundaries,
    downtime_pareto,
    hour_bucket_start,
)
from andon.domain.account_sums import account_from_values, sum_accounts
from andon.domain.calendar import hour_bucket, utc_ms_to_local
from andon.server.mes_service import MesService

__all__ = ["Bucket", "MesQueries"]

_HOUR = BucketKind.HOUR.value


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Bucket:
    start_ms: int
    end_ms: int
    label: str
    account: TimeAccount


def _with_no_data(account: TimeAccount, span_ms: int) -> TimeAccount:
    covered = account.all_time_ms - account.no_data_ms
    return replace(account, no_data_ms=span_ms - covered)


class MesQueries:
    def __init__(self, service: MesService, clock: Callable[[], int] = _now_ms) -> None:
        self.service = service
        self.repository = service.repository
        self._clock = clock

    def now_ms(self) -> int:
        return self._clock()

    def current_period(self, asset: AssetPath, now: int) -> tuple[int, int, str | None]:
        """(start, end, shift key) of the shift running now, or the local day (key None) when
        the site has no calendar or no shift at this moment: what "this shift" means."""
        calendar = self.service.calendar_for(asset)
        if calendar is not None:
            for shift in calendar.shifts_between(now, now + 1):
                if shift.start_ms <= now < shift.end_ms:
                    return shift.start_ms, shift.end_ms, shift.key
        local = utc_ms_to_local(now, self.service.zone_for(asset))
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        following = midnight + timedelta(days=1)  # wall-clock arithmetic: next local midnight
        return int(midnight.timestamp() * 1000), int(following.timestamp() * 1000), None

    # -- assets -------------------------------------------------------------------------------
    def leaves(self, asset: AssetPath) -> list[AssetPath]:
        """The assets with states at or below ``asset``: the ones its figures are summed from."""
        self.service.plant.tree.get(asset)  # DomainError if unknown
        return [a for a in self.service.plant.bound_assets if a == asset or asset.is_ancestor_of(a)]

    def intervals(self, asset: AssetPath, start_ms: int, end_ms: int) -> list[StateInterval]:
        stored = [iv for iv in self.repository.intervals(asset, start_ms, end_ms) if iv.end_ms]
        current = self.service.current(asset)
        if current is not None and current.start_ms < end_ms:
            stored = [iv for iv in stored if iv.start_ms < current.start_ms]
            stored.append(current)
        return stored

    # -- accounts -----------------------------------------------------------------------------
    def _next_hour(self, asset: AssetPath, ts_ms: int) -> int:
        zone = self.service.zone_for(asset)
        start, end = hour_bucket(ts_ms, zone)
        return ts_ms if start == ts_ms else end

    def _shifts(
        self, asset: AssetPath, start_ms: int, end_ms: int
    ) -> tuple[ShiftInstance, ...] | None:
        calendar = self.service.calendar_for(asset)
        return None if calendar is None else calendar.shifts_between(start_ms, end_ms)

    def _direct(self, asset: AssetPath, start_ms: int, end_ms: int) -> TimeAccount:
        """From stored closed intervals, counts and count corrections (the edges of a
        period)."""
        if end_ms <= start_ms:
            return TimeAccount()
        closed = [iv for iv in self.repository.intervals(asset, start_ms, end_ms) if iv.end_ms]
        return account_for(
            closed,
            [
                *self.repository.counts(asset, start_ms, end_ms),
                *self.service.edit_repository.corrections(asset, start_ms, end_ms),
            ],
            start_ms,
            end_ms,
            shifts=self._shifts(asset, start_ms, end_ms),
            ideal_cycle_ms=self.service.cycle_time_ms,
            small_stop_ms=self.service.small_stop_ms,
        )

    def _open_part(self, asset: AssetPath, start_ms: int, end_ms: int, now: int) -> TimeAccount:
        current = self.service.current(asset)
        if current is None or current.end_ms is not None:
            return TimeAccount()
        a, b = max(start_ms, current.start_ms), min(end_ms, now)
        if b <= a:
            return TimeAccount()
        part = account_for(
            [current], [], a, b,
            shifts=self._shifts(asset, a, b),
            small_stop_ms=self.service.small_stop_ms,
        )  # fmt: skip
        return replace(part, no_data_ms=0)

    def account(self, asset: AssetPath, start_ms: int, end_ms: int) -> TimeAccount:
        """The account of one asset with states over [start_ms, end_ms)."""
        now = self._clock()
        inner_start = self._next_hour(asset, start_ms)
        inner_end = hour_bucket_start(end_ms, self.service.zone_for(asset))
        if inner_end <= inner_start:
            total = self._direct(asset, start_ms, end_ms)
        else:
            total = (
                self.repository.rollup_total([asset], _HOUR, inner_start, inner_end)
                + self._direct(asset, start_ms, inner_start)
                + self._direct(asset, inner_end, end_ms)
            )
        total = replace(total, no_data_ms=0) + self._open_part(asset, start_ms, end_ms, now)
        return _with_no_data(total, end_ms - start_ms)

    def total(self, asset: AssetPath, start_ms: int, end_ms: int) -> TimeAccount:
        """A line or site: the sum of its assets' accounts (never an average of ratios)."""
        return sum(
            (self.account(leaf, start_ms, end_ms) for leaf in self.leaves(asset)), TimeAccount()
        )

    def hourly(self, asset: AssetPath, start_ms: int, end_ms: int) -> list[Bucket]:
        """One bucket per local hour overlapping [start_ms, end_ms) (edges clipped), summed
        over the asset's leaves; whole hours come from the stored rollups in one query."""
        leaves = self.leaves(asset)
        if not leaves:
            return []
        now = self._clock()
        first = leaves[0]  # a line or site lives in one site, so one timezone
        inner_start = self._next_hour(first, start_ms)
        inner_end = hour_bucket_start(end_ms, self.service.zone_for(first))
        if inner_end < inner_start:
            return [self._partial(leaves, start_ms, end_ms)]
        buckets = []
        if start_ms < inner_start:
            buckets.append(self._partial(leaves, start_ms, inner_start))
        open_from = [
            (leaf, current.start_ms)
            for leaf in leaves
            if (current := self.service.current(leaf)) is not None and current.end_ms is None
        ]
        # An hour needs the open intervals only if it starts before now and ends after the
        # earliest of them begins (what ``_whole`` asks of each); every other stored hour is
        # its row as read, no-data time included.
        open_since = min((since for _, since in open_from), default=None)
        cursor = inner_start
        rows = self.service.aggregates.account_rows(leaves, _HOUR, inner_start, inner_end)
        for row in rows:
            row_start, row_end = row[0], row[1]
            if cursor < row_start:
                buckets += self._unstored(leaves, cursor, row_start, open_from, now)
            stored = account_from_values(*row[2:])
            if open_since is None or row_end <= open_since or row_start >= now:
                buckets.append(Bucket(row_start, row_end, "", stored))
            else:
                buckets.append(self._whole(leaves, row_start, row_end, stored, open_from, now))
            cursor = row_end
        buckets += self._unstored(leaves, cursor, inner_end, open_from, now)
        if inner_end < end_ms:
            buckets.append(self._partial(leaves, inner_end, end_ms))
        return buckets

    def _unstored(
        self,
        leaves: list[AssetPath],
        start_ms: int,
        end_ms: int,
        open_from: list[tuple[AssetPath, int]],
        now: int,
    ) -> list[Bucket]:
        """The whole hours in [start_ms, end_ms), which have no stored rollup."""
        found = []
        while start_ms < end_ms:
            following = self._next_hour(leaves[0], start_ms + 1)
            found.append(self._whole(leaves, start_ms, following, None, open_from, now))
            start_ms = following
        return found

    def _partial(self, leaves: list[AssetPath], start_ms: int, end_ms: int) -> Bucket:
        account = sum((self.account(leaf, start_ms, end_ms) for leaf in leaves), TimeAccount())
        return Bucket(start_ms, end_ms, "", account)

    def _whole(
        self,
        leaves: list[AssetPath],
        start_ms: int,
        end_ms: int,
        stored: TimeAccount | None,
        open_from: list[tuple[AssetPath, int]],
        now: int,
    ) -> Bucket:
        open_parts = [
            self._open_part(leaf, start_ms, end_ms, now)
            for leaf, since in open_from
            if since < end_ms and start_ms < now
        ]
        if stored is not None and not open_parts:
            # The usual hour of a trend: the stored row already has its no-data time.
            return Bucket(start_ms, end_ms, "", stored)
        account = stored or TimeAccount()
        for part in open_parts:
            account += part
        return Bucket(
            start_ms, end_ms, "", _with_no_data(account, (end_ms - start_ms) * len(leaves))
        )

    def daily(self, asset: AssetPath, start_ms: int, end_ms: int) -> list[Bucket]:
        leaves = self.leaves(asset)
        if not leaves:
            return []
        hours = self.hourly(asset, start_ms, end_ms)
        days = day_boundaries(start_ms, end_ms, self.service.zone_for(leaves[0]))
        found, i = [], 0
        for a, b in itertools.pairwise(days):
            first = i
            while i < len(hours) and hours[i].start_ms < b:
                i += 1
            found.append(Bucket(a, b, "", sum_accounts(h.account for h in hours[first:i])))
        return found

    def by_shift(self, asset: AssetPath, start_ms: int, end_ms: int) -> list[Bucket]:
        """Whole shift instances starting in [start_ms, end_ms), from the shift rollups."""
        leaves = self.leaves(asset)
        calendar = None if not leaves else self.service.calendar_for(leaves[0])
        if calendar is None:
            return []
        now = self._clock()
        stored = self.service.aggregates.rollups_by_start(
            leaves, BucketKind.SHIFT.value, start_ms, end_ms
        )  # every shift bucket of the period in one grouped query
        found = []
        for shift in calendar.shifts_between(start_ms, end_ms):
            if not start_ms <= shift.start_ms < end_ms:
                continue
            account = stored.get(shift.start_ms, TimeAccount())
            for leaf in leaves:
                account += self._open_part(leaf, shift.start_ms, shift.end_ms, now)
            span = shift.duration_ms * len(leaves)
            found.append(
                Bucket(shift.start_ms, shift.end_ms, shift.key, _with_no_data(account, span))
            )
        return found

    def pareto(
        self, asset: AssetPath, start_ms: int, end_ms: int, *, by_category: bool = False
    ) -> tuple[ParetoRow, ...]:
        account = self.total(asset, start_ms, end_ms)
        return downtime_pareto(account, self.service.plant.reasons, by_category=by_category)
