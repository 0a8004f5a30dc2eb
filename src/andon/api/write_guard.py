"""Writes on a node that may not make them (a passive cluster node): 409 with the reason.

An ASGI middleware, so that nothing of the refused request runs (no partial write). It applies
to every request that is not a GET/HEAD/OPTIONS: the ``/api/v1`` routes except logging in and
out, and the web UI's forms (``/fragments/...``; ``/login`` and ``/logout`` stay open). The
asset or tag a write concerns decides the domain (``ApiContext.write_refusal``): the asset path
of ``/api/v1/assets/{path}/...``, else the ``asset`` (or a tag write's ``path``) field of a JSON
or form body; a write naming neither needs the node to lead some domain.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs, unquote

from andon.api.auth import SESSION_COOKIE
from andon.api.context import ApiContext

__all__ = ["WriteGuard", "target_of"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

_READS = frozenset({"GET", "HEAD", "OPTIONS"})
_OPEN = frozenset({"/api/v1/auth/token", "/api/v1/auth/logout", "/login", "/logout"})
_ASSET_URL = re.compile(r"^/api/v1/assets/(.+?)/(states|counts|mode)(/|$)")
#: Bodies are read for their target only up to this size (larger ones: no target from them).
_MAX_BODY = 1 << 20


def target_of(path: str, content_type: str, body: bytes) -> tuple[str | None, str | None]:
    """(asset path, tag path) a write names, either None."""
    match = _ASSET_URL.match(path)
    if match:
        return unquote(match.group(1)), None
    fields: dict[str, Any] = {}
    if len(body) <= _MAX_BODY:
        if "json" in content_type:
            try:
                loaded = json.loads(body or b"null")
            except ValueError:
                loaded = None
            fields = loaded if isinstance(loaded, dict) else {}
        elif "form" in content_type:
            parsed = parse_qs(body.decode("utf-8", errors="replace"))
            fields = {name: values[0] for name, values in parsed.items() if values}
    asset = fields.get("asset")
    tag = fields.get("path") if path == "/api/v1/tags/write" else None
    return (
        asset.strip() if isinstance(asset, str) and asset.strip() else None,
        tag if isinstance(tag, str) and tag else None,
    )


class WriteGuard:
    def __init__(self, app: App, context: ApiContext) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self.context.write_refusal
        path = scope.get("path", "")
        if (
            refusal is None
            or scope["type"] != "http"
            or scope.get("method", "GET") in _READS
            or path in _OPEN
            or not (path.startswith("/api/") or path.startswith("/fragments/"))
        ):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if "authorization" not in headers and SESSION_COOKIE not in headers.get("cookie", ""):
            await self.app(scope, receive, send)  # no login at all: the app answers 401
            return
        body, more = await _read_body(receive)
        asset, tag = target_of(path, headers.get("content-type", ""), body)
        reason = refusal(asset, tag)
        if reason is not None:
            await _refuse(send, reason, json_answer=path.startswith("/api/"))
            return
        await self.app(scope, _replay(body, more, receive), send)


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The body up to ``_MAX_BODY`` (``more``: the rest is still to be received)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False
        if size > _MAX_BODY:
            return b"".join(chunks), True


def _replay(body: bytes, more: bool, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replay


async def _refuse(send: Send, reason: str, *, json_answer: bool) -> None:
    if json_answer:
        payload = json.dumps({"detail": reason}).encode()
        content_type = b"application/json"
    else:
        text = reason.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        payload = f'<p class="error" role="alert">{text}</p>'.encode()
        content_type = b"text/html; charset=utf-8"
    await send(
        {
            "type": "http.response.start",
            "status": 409,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
