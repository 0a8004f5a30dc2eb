"""What the supervisor page lists: the schedule per line (Gantt rows and bars), runs and state
intervals of the chosen asset and period, read through the same queries the API answers from.

Chart times are sent as *wall-clock* milliseconds (the site's local time written as if it were
UTC): the chart library then draws the site's clock with ``useUTC``, whatever the browser's own
timezone, and DST days keep their 23 or 25 hours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC
from typing import Any
from zoneinfo import ZoneInfo

from andon.domain import Asset, AssetKind, AssetPath, Run, ScheduledRun, StateInterval, StateType
from andon.domain.calendar import utc_ms_to_local
from andon.server.mes_queries import MesQueries
from andon.storage.audit import AuditLog
from andon.storage.mes_schedule import ScheduleRepository
from andon.web.mes_view import PageQuery, duration_text, local_text, newest_intervals

__all__ = [
    "MAX_ROWS",
    "GanttLine",
    "IntervalRow",
    "RemovedRow",
    "RunRow",
    "gantt_lines",
    "gantt_scope",
    "interval_rows",
    "removed_rows",
    "run_rows",
    "scheduled_rows",
    "wall_ms",
]

#: Longest list a section renders; beyond it the page says so and asks for a shorter period.
MAX_ROWS = 300


def wall_ms(ts_ms: int, zone: ZoneInfo) -> int:
    local = utc_ms_to_local(ts_ms, zone).replace(tzinfo=UTC)
    return int(local.timestamp() * 1000)


@dataclass(slots=True)
class RunRow:
    id: str
    asset: str
    order_id: str
    item_id: str | None
    start: str
    end: str
    duration: str
    start_ms: int
    end_ms: int | None
    scheduled: bool = False


@dataclass(slots=True)
class GanttLine:
    """One chart: a line and the assets below it as rows, with scheduled and actual runs."""

    path: str
    name: str
    rows: list[str]
    bars: list[dict[str, Any]] = field(default_factory=list)
    window: tuple[int, int] = (0, 0)


def _row(mes: MesQueries, run: Run | ScheduledRun, zone: ZoneInfo, scheduled: bool) -> RunRow:
    end = run.end_ms
    length = None if end is None else end - run.start_ms
    return RunRow(
        run.id, str(run.asset), run.order_id, mes.service.item_of_order(run.order_id),
        local_text(run.start_ms, zone), local_text(end, zone), duration_text(length),
        run.start_ms, end, scheduled,
    )  # fmt: skip


def _below(path: AssetPath, asset: AssetPath) -> bool:
    return asset == path or path.is_ancestor_of(asset)


def _within(scope: list[AssetPath], asset: AssetPath) -> bool:
    return any(_below(path, asset) for path in scope)


def run_rows(
    mes: MesQueries,
    q: PageQuery,
    scope: list[AssetPath] | None = None,
    runs: list[Run] | None = None,
) -> list[RunRow]:
    """Actual runs at or below the asset (or ``scope``) overlapping the period, newest first;
    from ``runs`` when the page has read them already (sections share one read)."""
    within = scope or [q.path]
    found = [
        run
        for run in (mes.service.run_repository.runs() if runs is None else runs)
        if _within(within, run.asset)
        and run.start_ms < q.end_ms
        and (run.end_ms is None or run.end_ms > q.start_ms)
    ]
    found.sort(key=lambda r: r.start_ms, reverse=True)
    return [_row(mes, run, q.zone, scheduled=False) for run in found]


def scheduled_rows(
    mes: MesQueries, q: PageQuery, scope: list[AssetPath] | None = None
) -> list[RunRow]:
    """Scheduled runs at or below the asset (or ``scope``) overlapping the period, by start."""
    repository = ScheduleRepository(mes.repository.engine)
    plans = repository.scheduled_runs(None, q.start_ms, q.end_ms)
    within = scope or [q.path]
    found = sorted((p for p in plans if _within(within, p.asset)), key=lambda p: p.start_ms)
    return [_row(mes, plan, q.zone, scheduled=True) for plan in found]


def gantt_scope(mes: MesQueries, asset: Asset) -> list[Asset]:
    """The lines shown for the chosen asset: the lines below it, or the line above it."""
    tree = mes.service.plant.tree
    below = [a for a in (asset, *tree.descendants(asset.path)) if a.kind is AssetKind.LINE]
    if below:
        return below
    above = [a for a in tree.ancestors(asset.path) if a.kind is AssetKind.LINE]
    return above[:1] or [asset]  # a plant without lines: the chosen asset is the chart


def gantt_lines(
    mes: MesQueries, q: PageQuery, lines: list[Asset], plans: list[RunRow], runs: list[RunRow]
) -> list[GanttLine]:
    tree = mes.service.plant.tree
    now = mes.now_ms()
    charts = []
    for line in lines:
        rows = [str(line.path)] + [str(a.path) for a in tree.descendants(line.path)]
        chart = GanttLine(
            str(line.path), line.name, rows,
            window=(wall_ms(q.start_ms, q.zone), wall_ms(q.end_ms, q.zone)),
        )  # fmt: skip
        for row in (*plans, *runs):
            if row.asset not in rows:
                continue
            end = row.end_ms if row.end_ms is not None else max(now, row.start_ms + 1)
            chart.bars.append(
                {
                    "row": rows.index(row.asset),
                    "id": row.id,
                    "kind": "scheduled" if row.scheduled else "actual",
                    "label": f"{row.order_id}" + (f" ({row.item_id})" if row.item_id else ""),
                    "start": wall_ms(max(row.start_ms, q.start_ms), q.zone),
                    "end": wall_ms(min(end, q.end_ms), q.zone),
                    "text": f"{row.start} \u2192 {row.end}",
                    "open": row.end_ms is None,
                }
            )
        charts.append(chart)
    return charts


@dataclass(slots=True)
class IntervalRow:
    asset: str
    start_ms: int
    end_ms: int | None
    start: str
    end: str
    duration: str
    state: str
    state_type: str
    reason_id: str | None
    reason: str
    mode: str
    is_stop: bool


def interval_rows(
    mes: MesQueries, q: PageQuery, stops_only: bool = True
) -> tuple[list[IntervalRow], bool]:
    """State intervals of the assets at or below the chosen one, newest first, at most
    ``MAX_ROWS``; and whether that is all of the period's."""
    plant = mes.service.plant
    now = mes.now_ms()

    def keep(iv: StateInterval) -> bool:
        return not stops_only or iv.state_type is not StateType.RUNNING

    found, complete = newest_intervals(
        mes, mes.leaves(q.path), q.start_ms, q.end_ms, MAX_ROWS, keep
    )
    rows = []
    for iv in found:
        reason = ""
        if iv.reason_id is not None:
            known = iv.reason_id in plant.reasons
            reason = " / ".join(plant.reasons.path(iv.reason_id)) if known else iv.reason_id
        length = (iv.end_ms if iv.end_ms is not None else now) - iv.start_ms
        rows.append(
            IntervalRow(
                str(iv.asset), iv.start_ms, iv.end_ms, local_text(iv.start_ms, q.zone, True),
                local_text(iv.end_ms, q.zone, True), duration_text(length),
                plant.state_maps[iv.asset].resolve(iv.code).name, iv.state_type.value,
                iv.reason_id, reason, iv.mode.name, iv.state_type is not StateType.RUNNING,
            )
        )  # fmt: skip
    return rows, complete


@dataclass(slots=True)
class RemovedRow:
    """A run or plan whose newest audited change removed it (deleted, cancelled, an add undone):
    listed so that Revert can bring it back."""

    id: str
    asset: str
    order_id: str
    start: str
    end: str
    action: str
    username: str
    at: str


#: Audit entries looked at for removed records (newest first); older removals are in the API.
REMOVED_LOOKBACK = 500


def removed_rows(
    mes: MesQueries, audit: AuditLog, q: PageQuery, entity: str, scope: list[AssetPath]
) -> list[RemovedRow]:
    """Runs (``entity`` run) or plans (scheduled_run) at or below ``scope`` overlapping the
    period that the newest audit entry of each removed, newest first."""
    plans = ScheduleRepository(mes.repository.engine)

    def exists(record_id: str) -> bool:
        if entity == "run":
            return mes.service.run_repository.get_run(record_id) is not None
        return plans.get(record_id) is not None

    seen: set[str] = set()
    found = []
    for entry in audit.list(entity=entity, limit=REMOVED_LOOKBACK):
        if entry.entity_id in seen:
            continue
        seen.add(entry.entity_id)
        old = entry.before
        if entry.after is not None or not isinstance(old, dict):
            continue
        end = old.get("end_ms")
        if old["start_ms"] >= q.end_ms or (end is not None and end <= q.start_ms):
            continue
        if not _within(scope, AssetPath.parse(old["asset"])):
            continue
        # Last, as it costs a query: only removals the page would list are looked up.
        if exists(entry.entity_id):
            continue
        found.append(
            RemovedRow(
                entry.entity_id, old["asset"], old["order_id"], local_text(old["start_ms"], q.zone),
                local_text(end, q.zone), entry.action, entry.username,
                local_text(entry.at_ms, q.zone),
            )
        )  # fmt: skip
    return found
