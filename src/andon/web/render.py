"""The templates, their filters and the context every page shares (user, navigation, timezone).

Times are stored in UTC and shown on the site's wall clock: the plant file gives each site its
IANA timezone; without a plant file the pages show UTC. The page also carries the server's
clock (``data-server-now``) so that timers tick from the server's time, not a panel PC's.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import Response
from jinja2_fragments.fastapi import Jinja2Blocks

from andon.api.context import ApiContext
from andon.domain import AssetPath
from andon.domain.users import Role, User
from andon.web.access import WebPage, nav_pages
from andon.web.csrf import csrf_token
from andon.web.mes_view import duration_text, site_zone

__all__ = ["display_zone", "forbidden", "format_value", "render", "templates"]

_HERE = Path(__file__).parent
templates = Jinja2Blocks(directory=str(_HERE / "templates"))
_UTC = ZoneInfo("UTC")


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    if value is None:
        return "null"
    if isinstance(value, bytes):
        return f"{len(value)} bytes"
    return str(value)


def _local(ts_ms: int | None, zone: ZoneInfo | None, pattern: str) -> str:
    if ts_ms is None:
        return ""
    try:
        moment = datetime.fromtimestamp(ts_ms / 1000, tz=UTC).astimezone(zone or _UTC)
    except (OverflowError, OSError, ValueError):
        return f"out of range ({ts_ms} ms)"  # a device clock far off must not break a page
    return moment.strftime(pattern)


def _clock(ts_ms: int | None, zone: ZoneInfo | None = None) -> str:
    """``08:15:02`` on the given (site's) clock."""
    return _local(ts_ms, zone, "%H:%M:%S")


def _when(ts_ms: int | None, zone: ZoneInfo | None = None) -> str:
    """``2026-03-02 08:15:02`` on the given (site's) clock (the page names the zone)."""
    return _local(ts_ms, zone, "%Y-%m-%d %H:%M:%S")


def _percent(ratio: float | None) -> str:
    return "\u2013" if ratio is None else f"{ratio * 100:.1f} %"


templates.env.filters["value"] = format_value
templates.env.filters["clock"] = _clock
templates.env.filters["when"] = _when
templates.env.filters["duration"] = duration_text
templates.env.filters["percent"] = _percent
#: ``{{ csrf_token(request) }}``: the hidden field of a plain (non-htmx) form, see andon.web.csrf.
templates.env.globals["csrf_token"] = csrf_token


def display_zone(request: Request, asset: AssetPath | None = None) -> ZoneInfo:
    """The timezone of the asset's site (or the plant's first site); UTC without a plant."""
    ctx: ApiContext = request.app.state.context
    return _UTC if ctx.mes is None else site_zone(ctx.mes, asset)


def _now_ms(request: Request) -> int:
    ctx: ApiContext = request.app.state.context
    return ctx.mes.now_ms() if ctx.mes is not None else time.time_ns() // 1_000_000


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    user: User | None,
    block: str | None = None,
    status: int = 200,
    zone: ZoneInfo | None = None,
) -> Response:
    """A template (or one block of it, for htmx) with the shared page context."""
    ctx: ApiContext = request.app.state.context
    nav = [] if user is None else nav_pages(request.app, user)
    here = request.url.path
    active = max(
        (p.path for p in nav if here == p.path or here.startswith(p.path.rstrip("/") + "/")),
        key=len,
        default=None,
    )
    zone = zone or display_zone(request)
    shared = {
        "user": user,
        "nav": nav,
        "active": active,
        "site_name": ctx.site_name,
        "zone": zone,
        "tz": zone.key,
        "now_ms": _now_ms(request),
        "is_engineer": user is not None and user.role.allows(Role.ENGINEER),
    }
    return templates.TemplateResponse(
        request, name, {**shared, **context}, status_code=status, block_name=block
    )


def forbidden(request: Request, user: User, page: WebPage) -> Response:
    """The friendly 403: which role the page needs, what the user is, where to go instead."""
    return render(request, "forbidden.html", {"page": page}, user=user, status=403)
