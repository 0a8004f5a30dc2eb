"""Cross-site request forgery: writes made with the session cookie must come from our own pages.

The session cookie is SameSite=Lax, which stops another *site* but not another port of the same
host or a sibling subdomain (the same "site" to a browser): a page there could post a form to
``/fragments/operator/...`` and the browser would send the cookie along. So every request that
is not a GET/HEAD/OPTIONS and is authenticated by the cookie -- and every ``/login`` and
``/logout``, which need no cookie to be misused -- must show where it comes from, in this order:

1. ``Origin`` (every current browser sends it with such requests): its host and port must be
   the server's own (the ``Host`` header, or ``X-Forwarded-Host`` behind a reverse proxy that
   rewrites ``Host``; a page cannot set either header on a cross-site request);
2. else ``Sec-Fetch-Site``: ``same-origin`` (or ``none``: typed by the user);
3. else ``HX-Request: true`` (htmx; a cross-site form cannot set a header without a CORS
   preflight, which this server never grants);
4. else a CSRF token equal to the ``andon_csrf`` cookie, in the ``X-CSRF-Token`` header or the
   ``csrf_token`` form field (double submit: another site can neither read nor set the cookie).
   The cookie is set with every page; pages put the token in their plain forms.

Anything else is refused with 403 before the app sees it. Calls with ``Authorization: Bearer``
(scripts, the API) carry no ambient credential and are not affected.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import Request
from starlette.requests import cookie_parser

from andon.api.auth import SESSION_COOKIE

__all__ = [
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "CsrfGuard",
    "csrf_token",
    "same_origin",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

CSRF_COOKIE = "andon_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
#: Checked even without a session cookie: logging a victim into the attacker's account, or out.
_ALWAYS = frozenset({"/login", "/logout"})
#: A form is read for its token only up to this size (the app's own forms are far smaller).
_MAX_FORM = 65_536
_DEFAULT_PORTS = {"http": 80, "https": 443}


def csrf_token(request: Request) -> str:
    """The token of this browser, for a page's forms (the middleware sets its cookie)."""
    token: str = getattr(request.state, "csrf_token", "")
    return token


def _port(port: int | None, scheme: str) -> int | None:
    return port if port is not None else _DEFAULT_PORTS.get(scheme)


def same_origin(origin: str, hosts: list[str]) -> bool:
    """Whether ``origin`` (``scheme://host[:port]``) names one of ``hosts`` (``host[:port]``
    as the request names the server). Ports default by the origin's scheme, so a server behind
    a TLS proxy (``https`` outside, ``http`` inside) still matches itself."""
    try:
        parts = urlsplit(origin)
        origin_port = _port(parts.port, parts.scheme)
    except ValueError:
        return False
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return False
    for host in hosts:
        try:
            named = urlsplit(f"//{host.strip()}")
            host_port = _port(named.port, parts.scheme)
        except ValueError:
            continue
        if named.hostname == parts.hostname and host_port == origin_port:
            return True
    return False


class CsrfGuard:
    """The ASGI middleware of the module docstring."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[str, str] = {}
        for key, value in scope["headers"]:
            name = key.decode("latin-1").lower()
            # Repeated headers (e.g. two Cookie lines) are joined, as HTTP allows.
            text = value.decode("latin-1")
            headers[name] = f"{headers[name]}; {text}" if name in headers else text
        cookies = cookie_parser(headers.get("cookie", ""))
        known = cookies.get(CSRF_COOKIE, "")
        token = known if len(known) >= 32 else secrets.token_urlsafe(32)
        scope.setdefault("state", {})["csrf_token"] = token
        method = scope.get("method", "GET")
        if method not in _SAFE and self._needs_check(scope, headers, cookies):
            refusal, receive = await self._refusal(scope, headers, known, receive)
            if refusal is not None:
                await _refuse(send, refusal)
                return
        if token == known:
            await self.app(scope, receive, send)
            return
        secure = scope.get("scheme") == "https"
        await self.app(scope, receive, _with_cookie(send, token, secure))

    @staticmethod
    def _needs_check(scope: Scope, headers: dict[str, str], cookies: dict[str, str]) -> bool:
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return False  # the bearer token is what authenticates, not the cookie
        return bool(cookies.get(SESSION_COOKIE)) or scope.get("path", "") in _ALWAYS

    async def _refusal(
        self, scope: Scope, headers: dict[str, str], known: str, receive: Receive
    ) -> tuple[str | None, Receive]:
        """Why the request is refused (None: it may pass), and the receive to pass it on."""
        origin = headers.get("origin")
        if origin is not None:
            hosts = [headers.get("host", "")]
            hosts += [h for h in headers.get("x-forwarded-host", "").split(",") if h.strip()]
            if same_origin(origin, hosts):
                return None, receive
            return f"sent from another site ({origin[:100]})", receive
        fetch_site = headers.get("sec-fetch-site")
        if fetch_site is not None:
            if fetch_site in ("same-origin", "none"):
                return None, receive
            return f"sent from another site (Sec-Fetch-Site {fetch_site[:20]})", receive
        if headers.get("hx-request") == "true":
            return None, receive
        sent = headers.get(CSRF_HEADER)
        if sent is None and "application/x-www-form-urlencoded" in headers.get("content-type", ""):
            body, receive = await _buffered(receive)
            if body is not None:
                fields = parse_qs(body.decode("utf-8", errors="replace"))
                sent = next(iter(fields.get(CSRF_FIELD, [])), None)
        if known and sent and hmac.compare_digest(sent.encode(), known.encode()):
            return None, receive
        return "no proof that it was sent from this server's own page", receive


async def _buffered(receive: Receive) -> tuple[bytes | None, Receive]:
    """The whole body (None when larger than ``_MAX_FORM``) and a receive that replays it."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        if size > _MAX_FORM or not message.get("more_body", False):
            break
    body = (
        b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
        if size <= _MAX_FORM
        else None
    )

    async def replay() -> Message:
        if messages:
            return messages.pop(0)
        return await receive()

    return body, replay


async def _refuse(send: Send, reason: str) -> None:
    detail = f"refused: {reason}; reload the page and try again"
    body = json.dumps({"detail": detail}).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode("ascii")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _with_cookie(send: Send, token: str, secure: bool) -> Send:
    """``send`` that gives an HTML page the browser's new CSRF cookie."""
    cookie = f"{CSRF_COOKIE}={token}; Path=/; SameSite=Lax; HttpOnly" + (
        "; Secure" if secure else ""
    )

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            content_type = dict(message.get("headers", [])).get(b"content-type", b"")
            if content_type.startswith(b"text/html"):
                message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie.encode())]
        await send(message)

    return sending
