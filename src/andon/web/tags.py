"""The tags page (``/tags``): the tag tree one level at a time with live values and quality, and
a tag's detail (``/tags/view?path=``) with its history trend (uPlot, ``static/trend.js``) over
any range, read from ``/api/v1/tags/history``.

The detail page has a slot for an engineer-only "write value" control: the template
``tag_write.html``, included only for engineers and admins once it exists (the write API brings
it). Other roles see nothing of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, Response

from andon.api.context import ApiContext
from andon.domain.users import User
from andon.server.live_tags import LiveTag
from andon.sparkplug.model import DataType
from andon.web.access import PageAccess
from andon.web.render import render

__all__ = ["MAX_LISTED", "TagFolder", "TagListing", "list_level", "mount_tags"]

TagsUser = Annotated[User, Depends(PageAccess("/tags"))]
#: Tags listed on one level or one search; more are counted, and a narrower prefix shows them.
MAX_LISTED = 500
#: Trend ranges offered with one tap (label, milliseconds back from now).
RANGES = (("10 min", 600_000), ("1 h", 3_600_000), ("8 h", 28_800_000), ("24 h", 86_400_000),
          ("7 days", 604_800_000))  # fmt: skip


@dataclass(frozen=True, slots=True)
class TagFolder:
    name: str
    prefix: str  # ends with "/"
    count: int  # tags below it
    stale: int  # of which stale or offline


@dataclass(slots=True)
class TagListing:
    folders: list[TagFolder]
    tags: list[LiveTag]
    more: int  # tags not listed (beyond MAX_LISTED)


def list_level(tags: list[LiveTag], prefix: str, search: str = "") -> TagListing:
    """One level of the tree below ``prefix`` (folders, then the tags directly in it); with
    ``search``, every tag below ``prefix`` whose path contains it, flat."""
    if search:
        needle = search.lower()
        found = [t for t in tags if needle in t.path.lower()]
        return TagListing([], found[:MAX_LISTED], max(0, len(found) - MAX_LISTED))
    counts: dict[str, list[int]] = {}
    leaves: list[LiveTag] = []
    for tag in tags:
        rest = tag.path[len(prefix) :]
        name, slash, _ = rest.partition("/")
        if slash:
            figures = counts.setdefault(name, [0, 0])
            figures[0] += 1
            figures[1] += tag.stale
        else:
            leaves.append(tag)
    folders = [
        TagFolder(name, f"{prefix}{name}/", count, stale)
        for name, (count, stale) in sorted(counts.items())
    ]
    return TagListing(folders, leaves[:MAX_LISTED], max(0, len(leaves) - MAX_LISTED))


def _prefix(text: str) -> str:
    text = text.strip().lstrip("/")
    return text if not text or text.endswith("/") else text + "/"


def _datatype(code: int) -> str:
    try:
        return DataType(code).name
    except ValueError:
        return f"type {code}"


def mount_tags(app: FastAPI) -> None:
    @app.get("/tags", response_class=HTMLResponse, include_in_schema=False)
    def tags_page(
        request: Request,
        user: TagsUser,
        prefix: Annotated[str, Query()] = "",
        q: Annotated[str, Query(max_length=200)] = "",
    ) -> Response:
        ctx: ApiContext = request.app.state.context
        prefix = _prefix(prefix)
        listing = list_level(ctx.live_tags.snapshot(prefix), prefix, q.strip())
        parts = [p for p in prefix.split("/") if p]
        crumbs = [(part, "/".join(parts[: i + 1]) + "/") for i, part in enumerate(parts)]
        context = {"listing": listing, "prefix": prefix, "crumbs": crumbs, "q": q.strip()}
        return render(request, "tags.html", context, user=user)

    @app.get("/tags/view", response_class=HTMLResponse, include_in_schema=False)
    def tag_view(
        request: Request, user: TagsUser, path: Annotated[str, Query(max_length=1000)]
    ) -> Response:
        ctx: ApiContext = request.app.state.context
        tag = ctx.live_tags.get(path)
        datatype = tag.datatype if tag is not None else None
        if tag is None:
            known = {info.tag: info.datatype for info in ctx.history.tags()}
            if path not in known:
                message = f"No tag {path!r} is live or in the history."
                context = {"title": "No such tag", "message": message}
                return render(request, "message.html", context, user=user, status=404)
            datatype = known[path]
        parent = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
        details: dict[str, Any] = {
            "path": path,
            "tag": tag,
            "datatype": _datatype(datatype or 0),
            "parent": parent,
            "ranges": RANGES,
        }
        return render(request, "tag_detail.html", details, user=user)
