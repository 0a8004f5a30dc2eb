"""Bearer tokens for the test HTTP helpers, remembered per server base URL.

``AndonRig`` logs in once its server answers and registers the token here; ``http_get`` and
``http_get_json`` of ``andon.testing.processes`` then send it with every request to that server,
so tests written before logins existed keep working unchanged.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

__all__ = ["forget_token", "login", "register_token", "token_for_url"]

_lock = threading.Lock()
_tokens: dict[str, str] = {}


def register_token(base_url: str, token: str) -> None:
    with _lock:
        _tokens[base_url.rstrip("/")] = token


def forget_token(base_url: str) -> None:
    with _lock:
        _tokens.pop(base_url.rstrip("/"), None)


def token_for_url(url: str) -> str | None:
    """The token registered for the server ``url`` belongs to, if any."""
    with _lock:
        for base, token in _tokens.items():
            if url == base or url.startswith(base + "/") or url.startswith(base + "?"):
                return token
    return None


def login(base_url: str, username: str, password: str, timeout: float = 10.0) -> str:
    """``POST /api/v1/auth/token``; the access token. ``AssertionError`` when refused."""
    request = urllib.request.Request(
        f"{base_url.rstrip('/')}/api/v1/auth/token",
        data=json.dumps({"username": username, "password": password}).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            token: str = json.loads(response.read())["access_token"]
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", errors="replace")[:300]
        raise AssertionError(f"login as {username} at {base_url} -> {exc.code}: {detail}") from exc
    return token
