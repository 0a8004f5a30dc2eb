"""Loss analysis on a ``TimeAccount``: the six big losses and downtime Pareto charts.

Six big losses (Nakajima's TPM list, as named on oee.com), in time, adding up to PPT minus fully
productive time: breakdowns = unplanned + blocked + starved stops of at least ``small_stop_ms``
(default 5 min, the oee.com convention); setup and adjustments = setup time; small stops = the
shorter unplanned/blocked/starved stops (ISO 22400 keeps every recorded stop in availability, so
they are reported as a separate loss but reduce availability, not performance); reduced speed =
run time - ideal time; start-up rejects and production rejects = ideal time of rejected pieces,
split by ``ProducedCount.startup``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from andon.domain.assets import AssetPath
from andon.domain.oee import TimeAccount
from andon.domain.states import ReasonTree

__all__ = ["ParetoRow", "SixBigLosses", "downtime_pareto", "pareto_by_asset", "six_big_losses"]


@dataclass(frozen=True, slots=True)
class SixBigLosses:
    breakdowns_ms: int
    setup_adjustments_ms: int
    small_stops_ms: int
    reduced_speed_ms: float
    startup_rejects_ms: float
    production_rejects_ms: float

    @property
    def total_ms(self) -> float:
        return (
            self.breakdowns_ms
            + self.setup_adjustments_ms
            + self.small_stops_ms
            + self.reduced_speed_ms
            + self.startup_rejects_ms
            + self.production_rejects_ms
        )


def six_big_losses(account: TimeAccount) -> SixBigLosses:
    external_and_failures = account.unplanned_downtime_ms + account.blocked_ms + account.starved_ms
    return SixBigLosses(
        breakdowns_ms=external_and_failures - account.small_stop_ms,
        setup_adjustments_ms=account.setup_ms,
        small_stops_ms=account.small_stop_ms,
        reduced_speed_ms=account.run_time_ms - account.ideal_time_us / 1000,
        startup_rejects_ms=account.startup_reject_ideal_time_us / 1000,
        production_rejects_ms=(account.reject_ideal_time_us - account.startup_reject_ideal_time_us)
        / 1000,
    )


@dataclass(frozen=True, slots=True)
class ParetoRow:
    key: str
    downtime_ms: int
    share: float
    cumulative_share: float


def _pareto(totals: Mapping[str, int]) -> tuple[ParetoRow, ...]:
    items = sorted(((k, v) for k, v in totals.items() if v > 0), key=lambda kv: (-kv[1], kv[0]))
    whole = sum(v for _k, v in items)
    rows, running = [], 0
    for key, ms in items:
        running += ms
        rows.append(ParetoRow(key, ms, ms / whole, running / whole))
    return tuple(rows)


def downtime_pareto(
    account: TimeAccount, reasons: ReasonTree | None = None, *, by_category: bool = False
) -> tuple[ParetoRow, ...]:
    """Availability loss by reason id (``oee.UNASSIGNED_REASON`` for none), largest first; with
    ``by_category`` the reasons are rolled up to their top-level category of ``reasons``."""
    totals: dict[str, int] = {}
    for reason_id, ms in account.loss_by_reason:
        key = reason_id
        if by_category and reasons is not None and reason_id in reasons:
            key = reasons.category_of(reason_id).id
        totals[key] = totals.get(key, 0) + ms
    return _pareto(totals)


def pareto_by_asset(accounts: Mapping[AssetPath, TimeAccount]) -> tuple[ParetoRow, ...]:
    return _pareto({str(path): acc.downtime_ms for path, acc in accounts.items()})
