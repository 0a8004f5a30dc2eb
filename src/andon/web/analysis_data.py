"""The analysis page's figures: OEE trend per shift, day or week, downtime Pareto by reason and by
asset, a state timeline, MTBF/MTTR per asset and counts against target.

Everything comes from ``MesQueries`` (the functions behind ``/api/v1/oee`` and
``/api/v1/downtime/pareto``), so the page shows the API's numbers. A week is the sum of the site
days' accounts from Monday (never an average of daily ratios). The count *target* is what the
planned production time would have made at the ideal rate of the items that were made:
``PPT x rated pieces / ideal time`` (None when nothing with a known rate was made).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from andon.domain import AssetPath, TimeAccount, downtime_pareto, pareto_by_asset
from andon.domain.calendar import utc_ms_to_local
from andon.server.mes_queries import Bucket, MesQueries
from andon.web.mes_view import PageQuery, duration_text, local_text, newest_intervals
from andon.web.supervisor_data import wall_ms

__all__ = [
    "BY_CHOICES",
    "MAX_TIMELINE_BARS",
    "Figures",
    "figures",
    "leaf_accounts",
    "pareto_asset_rows",
    "pareto_reason_rows",
    "timeline_chart",
    "trend",
]

BY_CHOICES = ("shift", "day", "week")
#: Most state intervals drawn on the timeline; a longer period shows a note instead of a chart
#: a browser would choke on.
MAX_TIMELINE_BARS = 5000


@dataclass(frozen=True, slots=True)
class Figures:
    label: str
    start_ms: int
    end_ms: int
    availability: float | None
    performance: float | None
    quality: float | None
    oee: float | None
    teep: float | None
    mtbf_ms: float | None
    mttr_ms: float | None
    total: int
    good: int
    reject: int
    target: float | None
    planned_ms: int
    downtime_ms: int
    failures: int

    def json(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__slots__}


def _target(account: TimeAccount) -> float | None:
    rated = account.total_count - account.unrated_count
    if account.ideal_time_us <= 0 or rated <= 0:
        return None
    return account.planned_production_time_ms * rated / (account.ideal_time_us / 1000)


def figures(label: str, start_ms: int, end_ms: int, a: TimeAccount) -> Figures:
    return Figures(
        label, start_ms, end_ms, a.availability, a.performance, a.quality, a.oee, a.teep,
        a.mtbf_ms, a.mttr_ms, a.total_count, a.good_count, a.reject_count, _target(a),
        a.planned_production_time_ms, a.downtime_ms, a.failures,
    )  # fmt: skip


def _weeks(days: list[Bucket], q: PageQuery) -> list[Bucket]:
    """Site days summed into weeks from Monday; the first and last may be partial."""
    weeks: list[Bucket] = []
    for day in days:
        local = utc_ms_to_local(day.start_ms, q.zone).date()
        monday = local - timedelta(days=local.weekday())
        year, week, _ = monday.isocalendar()
        label = f"{year}-W{week:02d}"
        if weeks and weeks[-1].label == label:
            last = weeks[-1]
            weeks[-1] = Bucket(last.start_ms, day.end_ms, label, last.account + day.account)
        else:
            weeks.append(Bucket(day.start_ms, day.end_ms, label, day.account))
    return weeks


def trend(mes: MesQueries, q: PageQuery, by: str) -> list[Figures]:
    if by == "shift":
        buckets = mes.by_shift(q.path, q.start_ms, q.end_ms)
    else:
        days = [
            Bucket(b.start_ms, b.end_ms, local_text(b.start_ms, q.zone)[:10], b.account)
            for b in mes.daily(q.path, q.start_ms, q.end_ms)
        ]
        buckets = _weeks(days, q) if by == "week" else days
    return [figures(b.label, b.start_ms, b.end_ms, b.account) for b in buckets]


def leaf_accounts(mes: MesQueries, q: PageQuery) -> dict[AssetPath, TimeAccount]:
    """The account of every asset with states at or below the chosen one; their sum is what
    ``/api/v1/oee`` answers as the total."""
    return {leaf: mes.account(leaf, q.start_ms, q.end_ms) for leaf in mes.leaves(q.path)}


def pareto_reason_rows(mes: MesQueries, total: TimeAccount) -> list[dict[str, Any]]:
    reasons = mes.service.plant.reasons
    return [
        {
            "key": row.key,
            "label": " / ".join(reasons.path(row.key)) if row.key in reasons else "(no reason)",
            "downtime_ms": row.downtime_ms,
            "duration": duration_text(row.downtime_ms),
            "share": row.share,
            "cumulative_share": row.cumulative_share,
        }
        for row in downtime_pareto(total, reasons)
    ]


def pareto_asset_rows(accounts: dict[AssetPath, TimeAccount]) -> list[dict[str, Any]]:
    return [
        {
            "key": row.key,
            "label": row.key.rsplit("/", 1)[-1],
            "downtime_ms": row.downtime_ms,
            "duration": duration_text(row.downtime_ms),
            "share": row.share,
            "cumulative_share": row.cumulative_share,
        }
        for row in pareto_by_asset(accounts)
    ]


def timeline_chart(mes: MesQueries, q: PageQuery) -> dict[str, Any]:
    """Rows = assets with states; bars = their state intervals, coloured by state type. At most
    ``MAX_TIMELINE_BARS``, the newest: a dense period shows its newest part (``cut``)."""
    plant = mes.service.plant
    now = mes.now_ms()
    leaves = mes.leaves(q.path)
    rows = [str(leaf) for leaf in leaves]
    found, complete = newest_intervals(mes, leaves, q.start_ms, q.end_ms, MAX_TIMELINE_BARS)
    start = q.start_ms if complete or not found else max(q.start_ms, found[-1].start_ms)
    end = min(q.end_ms, max(now, start + 1))
    bars: list[dict[str, Any]] = []
    for iv in reversed(found):
        a, b = max(iv.start_ms, start), min(iv.end_ms if iv.end_ms is not None else now, end)
        if b <= a:
            continue
        bars.append(
            {
                "row": rows.index(str(iv.asset)),
                "start": wall_ms(a, q.zone),
                "end": wall_ms(b, q.zone),
                "type": iv.state_type.value,
                "label": plant.state_maps[iv.asset].resolve(iv.code).name,
                "text": f"{local_text(iv.start_ms, q.zone, True)} "
                f"\u2192 {local_text(iv.end_ms, q.zone, True)}",
            }
        )
    return {
        "rows": rows,
        "bars": bars,
        "cut": not complete,
        "from": local_text(start, q.zone),
        "window": (wall_ms(start, q.zone), wall_ms(end, q.zone)),
    }
