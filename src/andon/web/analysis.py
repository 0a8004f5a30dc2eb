"""The analysis page (``/analysis``, any logged-in user): OEE trend with availability,
performance and quality by shift, day or week; downtime Pareto by reason and by asset; a state
timeline; MTBF/MTTR per asset; counts against target; CSV and Parquet exports.

The figures are server-rendered tables (readable without scripts, and what tests compare with
the API); the same numbers go to the ECharts charts as JSON in ``data-chart`` attributes.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from andon.domain import TimeAccount
from andon.web.access import page_guard
from andon.web.analysis_data import (
    BY_CHOICES,
    figures,
    leaf_accounts,
    pareto_asset_rows,
    pareto_reason_rows,
    timeline_chart,
    trend,
)
from andon.web.mes_view import asset_options, mes_of, page_query
from andon.web.render import render, templates

__all__ = ["mount_analysis"]

PAGE = "/analysis"
#: Export kinds offered as buttons (GET /api/v1/export/{kind}).
EXPORTS = ("oee", "states", "counts", "runs")


def _count(value: float | None) -> str:
    return "\u2013" if value is None else f"{round(value):,}"


templates.env.filters["count"] = _count


def mount_analysis(app: FastAPI) -> None:
    @app.get(PAGE, response_class=HTMLResponse, include_in_schema=False)
    def analysis_page(request: Request) -> Response:
        user = page_guard(request, PAGE)
        if isinstance(user, Response):
            return user
        mes = mes_of(request)
        if mes is None:
            return render(request, "analysis.html", {"mes": None}, user=user, status=503)
        q = page_query(request, mes, default_days_back=6)
        by = request.query_params.get("by", "day")
        if by not in BY_CHOICES:
            by = "day"
        accounts = leaf_accounts(mes, q)
        total = sum(accounts.values(), TimeAccount())
        buckets = trend(mes, q, by)
        period = {"asset": str(q.path), "start": str(q.start_ms), "end": str(q.end_ms)}
        exports = [
            (kind, fmt, f"/api/v1/export/{kind}?" + urlencode(
                {**period, "format": fmt, **({"by": "day" if by == "week" else by}
                                              if kind == "oee" else {})}
            ))
            for kind in EXPORTS
            for fmt in ("csv", "parquet")
        ]  # fmt: skip
        context: dict[str, Any] = {
            "mes": mes,
            "q": q,
            "by": by,
            "by_choices": BY_CHOICES,
            "assets": asset_options(mes),
            "total": figures("Period", q.start_ms, q.end_ms, total),
            "buckets": buckets,
            "per_asset": [
                (str(leaf), figures(str(leaf), q.start_ms, q.end_ms, a))
                for leaf, a in accounts.items()
            ],
            "pareto_reasons": pareto_reason_rows(mes, total),
            "pareto_assets": pareto_asset_rows(accounts),
            "timeline": timeline_chart(mes, q),
            "trend_chart": {"buckets": [b.json() for b in buckets]},
            "exports": exports,
            "api_oee": "/api/v1/oee?" + urlencode({**period, "by": "day" if by == "week" else by}),
        }
        return render(request, "analysis.html", context, user=user, zone=q.zone)
