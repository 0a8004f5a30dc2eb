"""What the supervisor and analysis pages share: the plant's MES, the site's timezone, the period
and asset chosen in the query string, and times shown on the site's wall clock.

A period is given as site-local days (``from``/``to``, inclusive, ``YYYY-MM-DD``) because that is
how a plant talks about time ("yesterday's night shift"); it becomes [from 00:00, to+1 00:00) in
the site's timezone, so DST days are 23 or 25 hours long, exactly as the rollups split them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, time, timedelta
from zoneinfo import ZoneInfo

from fastapi import Request

from andon.api.context import ApiContext
from andon.domain import Asset, AssetKind, AssetPath, DomainError, StateInterval
from andon.domain.calendar import HOUR_MS, local_to_utc_ms, utc_ms_to_local
from andon.server.mes_queries import MesQueries

__all__ = [
    "FIRST_DAY",
    "LAST_DAY",
    "MAX_PERIOD_DAYS",
    "AssetOption",
    "PageQuery",
    "asset_options",
    "duration_text",
    "local_input",
    "local_text",
    "mes_of",
    "newest_intervals",
    "page_query",
    "site_zone",
]

#: Longest period a page shows at once (the API's by=hour limit is a year; pages stay snappy).
MAX_PERIOD_DAYS = 92
#: The days a page's period may start and end on: far outside, a date's midnight on a site's
#: clock, or the weeks and shifts around it, fall outside what ``datetime`` can hold.
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(9998, 12, 31)


def mes_of(request: Request) -> MesQueries | None:
    ctx: ApiContext = request.app.state.context
    return ctx.mes


def site_zone(mes: MesQueries, asset: AssetPath | None = None) -> ZoneInfo:
    """The timezone of the asset's site, else of the plant's first site."""
    tree = mes.service.plant.tree
    if asset is not None:
        try:
            return tree.site_of(asset).zone
        except DomainError:
            pass  # above the sites (an enterprise): the first site's clock
    for node in tree:
        if node.kind is AssetKind.SITE:
            return node.zone
    return ZoneInfo("UTC")


def local_text(ts_ms: int | None, zone: ZoneInfo, seconds: bool = False) -> str:
    """``2026-03-02 08:15`` on the site's wall clock; an open end reads ``open``."""
    if ts_ms is None:
        return "open"
    return utc_ms_to_local(ts_ms, zone).strftime(
        "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    )


def local_input(ts_ms: int | None, zone: ZoneInfo) -> str:
    """The value of an ``<input type=datetime-local step=1>`` on the site's wall clock."""
    if ts_ms is None:
        return ""
    return utc_ms_to_local(ts_ms, zone).strftime("%Y-%m-%dT%H:%M:%S")


def duration_text(ms: float | None) -> str:
    """``2 h 05 min``, ``4 min 10 s``, ``12 s``; empty for None."""
    if ms is None:
        return ""
    seconds = round(ms / 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


@dataclass(frozen=True, slots=True)
class AssetOption:
    path: str
    label: str
    kind: str
    has_states: bool


def asset_options(mes: MesQueries) -> list[AssetOption]:
    """Every asset for a picker, indented by depth, in plant file order."""
    service = mes.service
    options = []
    for asset in service.plant.tree:
        indent = "\u2003" * (asset.path.depth - 1)
        options.append(
            AssetOption(
                str(asset.path),
                f"{indent}{asset.name} ({asset.kind.value})",
                asset.kind.value,
                service.is_bound(asset.path),
            )
        )
    return options


@dataclass(frozen=True, slots=True)
class PageQuery:
    """The asset and period a page shows, with any input error to show instead of guessing."""

    asset: Asset
    day_from: date
    day_to: date
    start_ms: int
    end_ms: int
    zone: ZoneInfo
    error: str | None = None

    @property
    def path(self) -> AssetPath:
        return self.asset.path


def _root(mes: MesQueries) -> Asset:
    return next(iter(mes.service.plant.tree))


def page_query(
    request: Request, mes: MesQueries, *, default_days_back: int = 1, default_days_ahead: int = 0
) -> PageQuery:
    """The asset (default: the first asset of the plant) and site-local days from the query
    string; bad values fall back to the defaults and name the problem in ``error``."""
    params = request.query_params
    errors: list[str] = []
    tree = mes.service.plant.tree
    asset = _root(mes)
    text = params.get("asset", "").strip().strip("/")
    if text:
        try:
            asset = tree.get(AssetPath.parse(text))
        except DomainError as exc:
            errors.append(f"asset: {exc}")
    zone = site_zone(mes, asset.path)
    today = utc_ms_to_local(mes.now_ms(), zone).date()  # the MES clock, as the API
    day_from = today - timedelta(days=default_days_back)
    day_to = today + timedelta(days=default_days_ahead)
    try:
        if params.get("from"):
            day_from = date.fromisoformat(params["from"])
        if params.get("to"):
            day_to = date.fromisoformat(params["to"])
    except ValueError:
        errors.append("from/to: use dates as YYYY-MM-DD")
        day_from = today - timedelta(days=default_days_back)
        day_to = today + timedelta(days=default_days_ahead)
    if not (FIRST_DAY <= day_from <= LAST_DAY and FIRST_DAY <= day_to <= LAST_DAY):
        errors.append(f"from/to: give dates from {FIRST_DAY} to {LAST_DAY}")
        day_from = today - timedelta(days=default_days_back)
        day_to = today + timedelta(days=default_days_ahead)
    if day_to < day_from:
        errors.append("to: must not be before from")
        day_to = day_from
    if (day_to - day_from).days >= MAX_PERIOD_DAYS:
        errors.append(f"period: at most {MAX_PERIOD_DAYS} days at once")
        day_to = day_from + timedelta(days=MAX_PERIOD_DAYS - 1)
    start_ms = local_to_utc_ms(day_from, time(0), zone)
    end_ms = local_to_utc_ms(day_to + timedelta(days=1), time(0), zone)
    return PageQuery(asset, day_from, day_to, start_ms, end_ms, zone, "; ".join(errors) or None)


def newest_intervals(
    mes: MesQueries,
    assets: list[AssetPath],
    start_ms: int,
    end_ms: int,
    want: int,
    keep: Callable[[StateInterval], bool] = lambda _iv: True,
) -> tuple[list[StateInterval], bool]:
    """The newest intervals of ``assets`` overlapping [start_ms, end_ms) that ``keep`` accepts,
    newest first, at most ``want``; and whether that is all of them.

    Read backwards from the end in doubling windows, so the work follows what is shown, not the
    period: a simulated plant changes state every few seconds (~20,000 intervals a machine a
    day) and a list or chart shows a few thousand at most.
    """
    found: dict[tuple[AssetPath, int], StateInterval] = {}
    high, width = end_ms, HOUR_MS
    while high > start_ms and len(found) < want:
        low = max(start_ms, high - width)
        for asset in assets:
            for interval in mes.intervals(asset, low, high):
                if keep(interval):
                    found[(asset, interval.start_ms)] = interval
        high, width = low, width * 2
    newest = sorted(found.values(), key=lambda iv: (iv.start_ms, str(iv.asset)), reverse=True)
    return newest[:want], high <= start_ms and len(newest) <= want
