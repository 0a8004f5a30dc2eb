"""The supervisor page (``/supervisor``, supervisor and up): the schedule as a Gantt per line,
and the runs, downtime and counts of an asset over a period, each with its edit dialogs
(``/supervisor/forms/{name}``) and the audit history of a record (``/supervisor/history``).

Every section is a block of ``supervisor.html`` that htmx reloads (``/supervisor/fragments/..``)
after an edit. Lists are read through the same queries as the API; edits go to the API itself
(see ``andon.web.edit_forms``), so there is one code path for the rules and the audit trail.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from andon.api.context import ApiContext
from andon.domain import AssetPath, DomainError, Run
from andon.server.mes_queries import MesQueries
from andon.web.access import page_guard
from andon.web.audit_view import history_rows
from andon.web.counts_view import counts_context
from andon.web.edit_forms import build_form
from andon.web.mes_view import PageQuery, asset_options, mes_of, page_query, site_zone
from andon.web.render import render
from andon.web.supervisor_data import (
    MAX_ROWS,
    gantt_lines,
    gantt_scope,
    interval_rows,
    removed_rows,
    run_rows,
    scheduled_rows,
)

__all__ = ["SECTIONS", "mount_supervisor"]

PAGE = "/supervisor"
#: The page's sections, each a block of supervisor.html reloaded after an edit.
SECTIONS = ("schedule", "runs", "downtime", "counts")
_UTC = ZoneInfo("UTC")


def _query(q: PageQuery, request: Request, **change: str | None) -> str:
    """The page's query string (asset, days, list options), with ``change`` applied."""
    params = {"asset": str(q.path), "from": q.day_from.isoformat(), "to": q.day_to.isoformat()}
    for extra in ("all_states", "by"):
        if request.query_params.get(extra):
            params[extra] = request.query_params[extra]
    for key, value in change.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    return urlencode(params)


def _runs(request: Request, mes: MesQueries) -> list[Run]:
    """Every run, read once per request (the schedule's Gantt and the runs list both use it)."""
    runs: list[Run] | None = getattr(request.state, "supervisor_runs", None)
    if runs is None:
        runs = request.state.supervisor_runs = mes.service.run_repository.runs()
    return runs


def _section(name: str, mes: MesQueries, q: PageQuery, request: Request) -> dict[str, Any]:
    ctx: ApiContext = request.app.state.context
    audit = ctx.users.audit
    if name == "schedule":
        # The Gantt shows whole lines: a cell's page shows its line's schedule.
        lines = gantt_scope(mes, q.asset)
        scope = [line.path for line in lines]
        plans = scheduled_rows(mes, q, scope)
        actual = run_rows(mes, q, scope, _runs(request, mes))
        charts = gantt_lines(mes, q, lines, plans, actual)
        cancelled = removed_rows(mes, audit, q, "scheduled_run", scope)
        return {"plans": plans, "charts": [asdict(c) for c in charts], "cancelled": cancelled}
    if name == "runs":
        runs = run_rows(mes, q, runs=_runs(request, mes))
        return {"runs": runs, "deleted": removed_rows(mes, audit, q, "run", [q.path])}
    if name == "downtime":
        all_states = request.query_params.get("all_states") == "1"
        rows, complete = interval_rows(mes, q, stops_only=not all_states)
        toggle = _query(q, request, all_states=None if all_states else "1")
        return {"intervals": rows, "intervals_complete": complete, "all_states": all_states,
                "toggle_qs": toggle}  # fmt: skip
    context = counts_context(mes, q, request.query_params.get("by", "hour"))
    return context | {"qs_without_by": _query(q, request, by=None)}


def _context(request: Request, mes: MesQueries, q: PageQuery) -> dict[str, Any]:
    return {"mes": mes, "q": q, "qs": _query(q, request), "max_rows": MAX_ROWS}


def mount_supervisor(app: FastAPI) -> None:
    @app.get(PAGE, response_class=HTMLResponse, include_in_schema=False)
    def supervisor_page(request: Request) -> Response:
        user = page_guard(request, PAGE)
        if isinstance(user, Response):
            return user
        mes = mes_of(request)
        if mes is None:
            return render(request, "supervisor.html", {"mes": None}, user=user, status=503)
        q = page_query(request, mes, default_days_back=1, default_days_ahead=1)
        context = _context(request, mes, q) | {"assets": asset_options(mes)}
        for name in SECTIONS:
            context |= _section(name, mes, q, request)
        return render(request, "supervisor.html", context, user=user, zone=q.zone)

    @app.get(PAGE + "/fragments/{section}", response_class=HTMLResponse, include_in_schema=False)
    def supervisor_fragment(request: Request, section: str) -> Response:
        user = page_guard(request, PAGE)
        if isinstance(user, Response):
            return user
        mes = mes_of(request)
        if mes is None or section not in SECTIONS:
            return HTMLResponse("<p class='error'>Not available.</p>", status_code=404)
        q = page_query(request, mes, default_days_back=1, default_days_ahead=1)
        context = _context(request, mes, q) | _section(section, mes, q, request)
        return render(request, "supervisor.html", context, user=user, block=section, zone=q.zone)

    @app.get(PAGE + "/forms/{name}", response_class=HTMLResponse, include_in_schema=False)
    def supervisor_form(request: Request, name: str) -> Response:
        user = page_guard(request, PAGE)
        if isinstance(user, Response):
            return user
        mes = mes_of(request)
        if mes is None:
            return HTMLResponse("<p class='error'>No plant file is loaded.</p>", status_code=503)
        form = build_form(mes, name, request.query_params)
        context = {"form": form, "reload_url": f"{PAGE}/forms/{name}"}
        return render(request, "supervisor_form.html", context, user=user)

    @app.get(PAGE + "/history", response_class=HTMLResponse, include_in_schema=False)
    def supervisor_history(request: Request, entity: str, entity_id: str) -> Response:
        user = page_guard(request, PAGE)
        if isinstance(user, Response):
            return user
        ctx: ApiContext = request.app.state.context
        mes = mes_of(request)
        zone = _UTC if mes is None else site_zone(mes)
        if mes is not None and entity == "state_interval":
            # The id is <asset>@<start_ms>: that asset's site clock (else the first site's).
            with contextlib.suppress(DomainError):
                zone = site_zone(mes, AssetPath.parse(entity_id.rsplit("@", 1)[0]))
        rows = history_rows(ctx.users.audit, entity, entity_id, zone)
        context = {"rows": rows, "entity": entity, "entity_id": entity_id}
        return render(request, "supervisor_history.html", context, user=user)
