"""The supervisor's edit dialogs as data: which API call a form makes and with which fields.

Forms never write anything themselves: ``static/api-forms.js`` sends them as JSON to the same
``/api/v1`` endpoints scripts use, so validation, roles, the audit trail and conflict checks have
one code path. A field's wall-clock value is turned into an instant in the site's timezone by the
script (``data-tz``). Edit forms send only the fields the user changed (``send_changed``): times are
shown to the second, and re-sending an untouched start would cut its milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import HTTPException

from andon.api.timeparse import MAX_INSTANT_MS, MIN_INSTANT_MS
from andon.domain import AssetPath, DomainError, OrderState, StateType
from andon.domain.calendar import utc_ms_to_local
from andon.server.mes_queries import MesQueries
from andon.storage.mes_schedule import ScheduleRepository
from andon.web.mes_view import asset_options, local_input, site_zone

__all__ = ["FORMS", "FormField", "FormSpec", "asset_url", "build_form"]

FieldKind = Literal["text", "datetime", "select", "textarea", "number", "password"]


@dataclass(slots=True)
class FormField:
    name: str
    label: str
    kind: FieldKind = "text"
    value: str = ""
    options: list[tuple[str, str]] = field(default_factory=list)
    required: bool = False
    #: Left out of the body when empty (an optional field of the API).
    omit_empty: bool = False
    #: Sent as JSON null when empty (e.g. "no end: the run stays open").
    null_empty: bool = False
    #: Sent in the query string (DELETE endpoints take their comment there).
    in_query: bool = False
    hint: str = ""
    #: A "true"/"false" choice sent as a JSON boolean.
    boolean: bool = False
    #: A choice sent as a JSON integer (e.g. a state code).
    integer: bool = False
    #: Changing the value reloads the form (other fields depend on it, e.g. an asset's states).
    reload: bool = False
    #: The exact instant a datetime field shows (sent back as is while untouched).
    instant_ms: int | None = None


@dataclass(slots=True)
class FormSpec:
    """``url`` may hold ``{field}`` placeholders: filled from that field (which then stays out of
    the body), e.g. ``/api/v1/assets/{asset}/states``."""

    title: str
    method: Literal["POST", "PUT", "PATCH", "DELETE"]
    url: str
    fields: list[FormField]
    submit: str
    tz: str
    danger: bool = False
    note: str = ""
    send_changed: bool = False


def asset_url(path: AssetPath | str) -> str:
    return "/".join(quote(segment, safe="") for segment in str(path).split("/"))


def _when(name: str, label: str, ts_ms: int | None, tz: ZoneInfo, **options: Any) -> FormField:
    """A datetime field showing ``ts_ms`` on the site's clock. A wall time the clocks pass twice
    (the hour they go back) is flagged in the hint: the field shows no UTC offset."""
    hint = str(options.pop("hint", ""))
    if ts_ms is not None:
        local = utc_ms_to_local(ts_ms, tz)
        other = local.replace(tzinfo=None).replace(fold=1 - local.fold, tzinfo=tz)
        if other.utcoffset() != local.utcoffset():
            which = "first" if local.fold == 0 else "second"
            hint = (
                f"{local:%H:%M:%S} happens twice that day (the clocks go back); this is the "
                f"{which} one, UTC{local:%z}" + (f"; {hint}" if hint else "")
            )
    return FormField(
        name, label, "datetime", local_input(ts_ms, tz), hint=hint, instant_ms=ts_ms, **options
    )


def _comment(why: str) -> FormField:
    return FormField("comment", "Comment (why; kept in the audit trail)", "textarea",
                     required=True, hint=why)  # fmt: skip


def _orders(mes: MesQueries, current: str = "") -> list[tuple[str, str]]:
    """Orders that can still run, plus the current one whatever its state."""
    open_states = (OrderState.PLANNED, OrderState.RELEASED, OrderState.RUNNING)
    return [
        (o.id, f"{o.id} \u2013 {o.item_id} \u00d7 {o.quantity} ({o.state.value})")
        for o in mes.service.run_repository.orders()
        if o.state in open_states or o.id == current
    ]


def _assets(mes: MesQueries, bound_only: bool = False) -> list[tuple[str, str]]:
    return [(o.path, o.label) for o in asset_options(mes) if o.has_states or not bound_only]


def _asset(mes: MesQueries, text: str) -> AssetPath:
    try:
        path = AssetPath.parse(text.strip("/"))
        mes.service.plant.tree.get(path)
    except DomainError as exc:
        raise HTTPException(404, str(exc)) from exc
    return path


#: The instants a form takes: those a date can show on any site's clock (a day inside the
#: range of ``datetime``; beyond it a conversion to the site's time would overflow).
_FIRST_MS = MIN_INSTANT_MS + 86_400_000
_LAST_MS = MAX_INSTANT_MS - 86_400_000


def _instant_ms(text: str, name: str) -> int:
    """An instant in epoch ms from the query string; 422 when it is none."""
    try:
        value = int(text) if len(text) <= 20 else None
    except ValueError:
        value = None
    if value is None:
        raise HTTPException(422, f"{name}: not an instant in epoch ms: {text[:40]!r}")
    if not _FIRST_MS <= value <= _LAST_MS:
        raise HTTPException(422, f"{name}: {value} is out of range (years 0001 to 9999)")
    return value


Params = Mapping[str, str]


def _schedule_add(mes: MesQueries, p: Params, tz: ZoneInfo) -> FormSpec:
    return FormSpec(
        "Schedule a run", "POST", "/api/v1/schedule",
        [
            FormField("asset", "Asset", "select", p.get("asset", ""), _assets(mes), True),
            FormField("order_id", "Order", "select", "", _orders(mes), True),
            FormField("start", "Planned start", "datetime", required=True),
            FormField("end", "Planned end", "datetime", required=True),
            FormField("id", "Id (optional)", omit_empty=True),
            _comment("e.g. planned for the customer's Friday delivery"),
        ],
        "Schedule", str(tz),
    )  # fmt: skip


def _plan(mes: MesQueries, p: Params) -> tuple[str, str, int, int]:
    plan = ScheduleRepository(mes.repository.engine).get(p.get("id", ""))
    if plan is None:
        raise HTTPException(404, f"no scheduled run {p.get('id', '')!r}")
    return plan.id, plan.order_id, plan.start_ms, plan.end_ms


def _schedule_move(mes: MesQueries, p: Params, tz: ZoneInfo) -> FormSpec:
    plan_id, order_id, start, end = _plan(mes, p)
    return FormSpec(
        f"Move scheduled run {plan_id}", "PATCH", f"/api/v1/schedule/{quote(plan_id)}",
        [
            FormField("order_id", "Order", "select", order_id, _orders(mes, order_id)),
            _when("start", "Planned start", start, tz),
            _when("end", "Planned end", end, tz),
            _comment("e.g. moved after the changeover"),
        ],
        "Move", str(tz), send_changed=True,
    )  # fmt: skip


def _schedule_cancel(mes: MesQueries, p: Params, tz: ZoneInfo) -> FormSpec:
    plan_id, *_ = _plan(mes, p)
    return FormSpec(
        f"Cancel scheduled run {plan_id}", "DELETE", f"/api/v1/schedule/{quote(plan_id)}",
        [FormField("comment", "Comment (why)", "textarea", required=True, in_query=True)],
        "Cancel the scheduled run", str(tz), danger=True,
        note="The plan is removed; its audit history keeps it and Revert brings it back.",
    )  # fmt: skip


def _run(mes: MesQueries, p: Params) -> tuple[str, str, int, int | None]:
    run = mes.service.run_repository.get_run(p.get("id", ""))
    if run is None:
        raise HTTPException(404, f"no run {p.get('id', '')!r}")
    return run.id, run.order_id, run.start_ms, run.end_ms


def _run_add(mes: MesQueries, p: Params, tz: ZoneInfo) -> FormSpec:
    return FormSpec(
        "Add a missed run", "POST", "/api/v1/runs",
        [
            FormField("asset", "Asset", "select", p.get("asset", ""), _assets(mes), True),
            FormField("order_id", "Order", "select", "", _orders(mes), True),
            FormField("start", "Start", "datetime", required=True),
            FormField("end", "End (empty: still running)", "datetime", omit_empty=True),
            FormField("id", "Id (optional)", omit_empty=True),
            _comment("e.g. the line ran order 4711 but nobody started it on the panel"),
        ],
        "Add run", str(tz),
    )  # fmt: skip


def _run_edit(mes: MesQueries, p: Params, tz: ZoneInfo) -> FormSpec:
    run_id, order_id, start, end = _run(mes, p)
    return FormSpec(
        f"Edit run {run_id}", "PATCH", f"/api/v1/runs/{quote(run_id)}",
        [
            FormField("order_id", "Order", "select", order_id, _orders(mes, order_id)),
            _when("start", "Start", start, tz),
            _when("end", "End (empty: still running)", end, tz, null_empty=True),
            _comment("e.g. the run really started at the shift change"),
        ],
        "Save", str(tz), send_changed=True,
    )  # fmt: skip


def _run_delete(mes: MesQueries, p: Params, tz: ZoneInfo) -> FormSpec:
    run_id, *_ = _run(mes, p)
    return FormSpec(
        f"Delete run {run_id}", "DELETE", f"/api/v1/runs/{quote(run_id)}",
        [FormField("comment", "Comment (why)", "textarea", required=True, in_query=True)],
        "Delete the run", str(tz), danger=True,
        note="Counts in its span are re-rated without it; Revert brings it back.",
    )  # fmt: skip


def _revert(kind: str) -> Callable[[MesQueries, Params, ZoneInfo], FormSpec]:
    def build(mes: MesQueries, p: Params, tz: ZoneInfo) -> FormSpec:
        if kind == "interval":
            asset = _asset(mes, p.get("asset", ""))
            start = _instant_ms(p.get("start_ms", ""), "start_ms")
            url = f"/api/v1/assets/{asset_url(asset)}/states/{start}/revert"
            what = f"the last change of the interval at {local_input(start, tz)} on {asset}"
        else:
            ident = p.get("id", "")
            base = {"run": "runs", "schedule": "schedule", "count-edit": "count-edits"}[kind]
            url = f"/api/v1/{base}/{quote(ident)}/revert"
            what = f"the last change of {kind.replace('-', ' ')} {ident}"
        return FormSpec(
            f"Revert {what}", "POST", url, [_comment("e.g. entered on the wrong line")],
            "Revert", str(tz), note="Undoes the newest audit entry of this record.",
        )  # fmt: skip

    return build


def _interval(mes: MesQueries, p: Params) -> tuple[AssetPath, int, int | None, StateType]:
    asset = _asset(mes, p.get("asset", ""))
    start = _instant_ms(p.get("start_ms", ""), "start_ms")
    interval = mes.service.interval_at(asset, start) if mes.service.is_bound(asset) else None
    if interval is None or interval.start_ms != start:
        raise HTTPException(404, f"{asset}: no state interval starts at {start}")
    return asset, start, interval.end_ms, interval.state_type


def _reasons(mes: MesQueries) -> list[tuple[str, str]]:
    reasons = mes.service.plant.reasons
    options = [("", "(the state's default reason)")]
    options += [(r.id, " / ".join(reasons.path(r.id))) for r in reasons.leaves()]
    return options


def _interval_reason(mes: MesQueries, p: Params, tz: ZoneInfo) -> FormSpec:
    asset, start, _end, _type = _interval(mes, p)
    return FormSpec(
        f"Reason of the stop at {local_input(start, tz)} on {asset}", "PUT",
        f"/api/v1/assets/{asset_url(asset)}/states/{start}/reason",
        [
            FormField("reason_id", "Reason", "select", p.get("reason_id", ""), _reasons(mes),
                      null_empty=True),
            FormField("comment", "Comment", "textarea", omit_empty=True),
        ],
        "Set reason", str(tz),
    )  # fmt: skip


def _interval_split(mes: MesQueries, p: Params, tz: ZoneInfo) -> FormSpec:
    asset, start, end, _type = _interval(mes, p)
    middle = start + ((end if end is not None else mes.now_ms()) - start) // 2
    return FormSpec(
        f"Split the interval at {local_input(start, tz)} on {asset}", "POST",
        f"/api/v1/assets/{asset_url(asset)}/states/{start}/split",
        [
            _when("at", "Split at", middle, tz, required=True,
                  hint="strictly inside the interval"),
            _comment("e.g. the jam was cleared, then the operator waited for material"),
        ],
        "Split", str(tz),
    )  # fmt: skip


def _downtime_add(mes: MesQueries, p: Params, tz: ZoneInfo) -> FormSpec:
    plant = mes.service.plant
    chosen = _bound_choice(mes, p.get("asset", ""))
    bound = _assets(mes, bound_only=True)
    states: list[tuple[str, str]] = []
    if chosen:
        for d in plant.state_maps[AssetPath.parse(chosen)].definitions.values():
            if d.type is not StateType.RUNNING:
                states.append((str(d.code), f"{d.code} {d.name} ({d.type.value})"))
    return FormSpec(
        "Add downtime", "POST", "/api/v1/assets/{asset}/states",
        [
            FormField("asset", "Asset", "select", chosen, bound, True, reload=True),
            FormField("start", "Start", "datetime", required=True),
            FormField("end", "End", "datetime", required=True),
            FormField("state", "State", "select", "", states, True, integer=True),
            FormField("reason", "Reason", "select", "", _reasons(mes), omit_empty=True),
            _comment("e.g. the PLC was offline during the power cut; the line stood still"),
        ],
        "Add downtime", str(tz),
    )  # fmt: skip


def _bound_choice(mes: MesQueries, text: str) -> str:
    """The asset itself if it has states, else the first asset with states below it (or in the
    plant): an edit of intervals or counts needs one."""
    bound = [path for path, _ in _assets(mes, bound_only=True)]
    if text in bound or not bound:
        return text if text in bound else ""
    below = [b for b in bound if b.startswith(text.rstrip("/") + "/")] if text else []
    return (below or bound)[0]


def _counts_edit(mes: MesQueries, p: Params, tz: ZoneInfo) -> FormSpec:
    chosen = _bound_choice(mes, p.get("asset", ""))
    bound = _assets(mes, bound_only=True)
    start = p.get("start_ms", "")
    end = p.get("end_ms", "")
    start_ms = _instant_ms(start, "start_ms") if start else None
    end_ms = _instant_ms(end, "end_ms") if end else None
    return FormSpec(
        "Correct counts", "POST", "/api/v1/assets/{asset}/counts/edits",
        [
            FormField("asset", "Asset", "select", chosen, bound, True),
            _when("start", "From", start_ms, tz, required=True),
            _when("end", "To", end_ms, tz, required=True),
            FormField("mode", "How", "select", "set",
                      [("set", "set the totals of the period to"), ("add", "add to the period")],
                      True),
            FormField("infeed", "Infeed", "number", omit_empty=True),
            FormField("outfeed", "Outfeed", "number", omit_empty=True),
            FormField("waste", "Waste", "number", omit_empty=True),
            _comment("e.g. 120 bottles were counted by hand after the sensor failed"),
        ],
        "Save correction", str(tz),
        note="Give the counters you correct; leave the others empty.",
    )  # fmt: skip


Builder = Callable[[MesQueries, Params, ZoneInfo], FormSpec]

#: Form name (``/supervisor/forms/{name}``) -> builder.
FORMS: dict[str, Builder] = {
    "schedule-add": _schedule_add,
    "schedule-move": _schedule_move,
    "schedule-cancel": _schedule_cancel,
    "schedule-revert": _revert("schedule"),
    "run-add": _run_add,
    "run-edit": _run_edit,
    "run-delete": _run_delete,
    "run-revert": _revert("run"),
    "interval-reason": _interval_reason,
    "interval-split": _interval_split,
    "interval-revert": _revert("interval"),
    "downtime-add": _downtime_add,
    "counts-edit": _counts_edit,
    "count-edit-revert": _revert("count-edit"),
}


def build_form(mes: MesQueries, name: str, params: Params) -> FormSpec:
    builder = FORMS.get(name)
    if builder is None:
        raise HTTPException(404, f"no form {name!r}")
    asset_text = params.get("asset", "").strip("/")
    zone = site_zone(mes, _asset(mes, asset_text) if asset_text else None)
    return builder(mes, params, zone)
