"""``GET /api/v1/live``: tag value changes and asset state changes as server-sent events.

The stream starts with ``retry`` and a snapshot of the current values the filter selects, then
carries every change as it happens:

* ``event: tags`` -- ``[{"path", "value", "datatype", "quality", "ts_ms", "online"}, ...]``
* ``event: states`` -- ``[{"asset", "code", "name", "state_type", "mode", "reason_id",
  "reason", "since_ms"}, ...]``
* ``event: end`` -- ``{"reason": ...}`` when the server ends the stream: the client was too
  slow (its queue filled up) or the server stops. EventSource reconnects by itself and starts
  again from a snapshot.

A comment line is sent every ``HEARTBEAT_S`` without changes, so proxies keep the connection
and a vanished client is noticed. At least that often the stream also checks that its login
still holds: after a logout, a disabled user or an expired session it ends with
``event: end`` (reason ``logged out``), and the reconnect is refused with 401.

Streams are bounded: 429 when the user has too many open, 503 when the server has (see
``LiveEvents``). The snapshot is read and serialised on a worker thread, not the event loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from andon.api.auth import CurrentUser, request_token
from andon.api.context import ApiContext
from andon.server.live_events import LiveEvents, LiveFilter, LiveLimitError
from andon.storage.users import StorageUnavailableError

__all__ = ["HEARTBEAT_S", "RETRY_MS", "router", "sse_frame"]

router = APIRouter(prefix="/api/v1/live", tags=["live"])

HEARTBEAT_S = 15.0
#: How long a browser waits before it reconnects after the stream ended.
RETRY_MS = 3000
_KINDS = frozenset({"tags", "states"})


def sse_frame(name: str, data: Any) -> str:
    # One line of JSON: "data:" lines cannot hold a newline, and json.dumps writes none.
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _kinds(text: str) -> frozenset[str]:
    kinds = frozenset(part.strip() for part in text.split(",") if part.strip())
    if not kinds or not kinds <= _KINDS:
        raise HTTPException(422, f"events: {text!r}; give tags, states or tags,states")
    return kinds


#: Checks the stream's login; True while it holds (runs on a worker thread: it may query).
LoginCheck = Callable[[], bool]


def _snapshot_frames(hub: LiveEvents, live_filter: LiveFilter) -> list[str]:
    return [sse_frame(name, items) for name, items in hub.snapshot(live_filter)]


async def _stream(
    hub: LiveEvents, live_filter: LiveFilter, owner: str | None, logged_in: LoginCheck
) -> AsyncIterator[str]:
    try:
        subscription = hub.subscribe(live_filter, asyncio.get_running_loop(), owner)
    except LiveLimitError as exc:  # others opened streams since the check before the response
        yield sse_frame("end", {"reason": str(exc)})
        return
    try:
        yield f"retry: {RETRY_MS}\n\n"
        # Reading the states may wait for the MES lock: never on the event loop.
        for frame in await run_in_threadpool(_snapshot_frames, hub, live_filter):
            yield frame
        checked = time.monotonic()
        while True:
            events = await subscription.next_events(HEARTBEAT_S)
            if time.monotonic() - checked >= HEARTBEAT_S:
                checked = time.monotonic()
                if not await run_in_threadpool(logged_in):
                    yield sse_frame("end", {"reason": "logged out"})
                    return
            if events is None:
                # A vanished client is noticed here: writing to its closed socket fails.
                yield ": keep-alive\n\n"
                continue
            for name, items in events:
                yield sse_frame(name, items)
            if subscription.end_reason is not None:
                yield sse_frame("end", {"reason": subscription.end_reason})
                return
    finally:
        hub.unsubscribe(subscription)


def _login_check(request: Request, token: str | None) -> LoginCheck:
    """Whether the token the stream was opened with still logs in (logout, a disabled user,
    an expired session end it); a database outage keeps the stream (the token was good)."""
    ctx: ApiContext = request.app.state.context

    def logged_in() -> bool:
        if token is None:
            return False
        try:
            return ctx.users.user_for_token(token, time.time_ns() // 1_000_000) is not None
        except StorageUnavailableError:
            return True

    return logged_in


@router.get(
    "",
    summary="Live tag values and asset states as server-sent events (text/event-stream)",
    response_class=StreamingResponse,
    responses={
        429: {"description": "This user has too many live streams open"},
        503: {"description": "No live event hub, or the server has too many streams open"},
    },
)
async def live(
    request: Request,
    user: CurrentUser,
    tag_prefix: Annotated[str, Query(description="Only tags whose path starts with this")] = "",
    asset_prefix: Annotated[
        str, Query(description="Only states of this asset and the assets below it")
    ] = "",
    events: Annotated[str, Query(description="tags, states or tags,states")] = "tags,states",
) -> StreamingResponse:
    ctx: ApiContext = request.app.state.context
    kinds = _kinds(events)
    if ctx.live is None:
        raise HTTPException(503, "live updates are not available on this server")
    live_filter = LiveFilter(
        tag_prefix=tag_prefix,
        asset_prefix=asset_prefix,
        tags="tags" in kinds,
        states="states" in kinds,
    )
    try:
        ctx.live.check_room(user.username)
    except LiveLimitError as exc:
        raise HTTPException(429 if exc.per_user else 503, str(exc)) from exc
    return StreamingResponse(
        _stream(
            ctx.live, live_filter, user.username, _login_check(request, request_token(request))
        ),
        media_type="text/event-stream",
        # No caching and no proxy buffering: each event must reach the browser at once.
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
