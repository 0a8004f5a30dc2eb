"""The running demo plant as browser tests see it (used by the fixtures in conftest.py)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from andon.domain.users import Role
from andon.testing.http_auth import login as api_login
from andon.testing.processes import AndonProcess, http_get, http_get_json

if TYPE_CHECKING:
    from playwright.sync_api import Page

__all__ = ["SCREENSHOTS", "START_TIMEOUT_S", "VIEWPORT", "LivePlant", "states_known"]

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"
VIEWPORT = {"width": 1280, "height": 800}
#: Starting the broker, the server and two edges on a busy 2-core machine.
START_TIMEOUT_S = 90.0


@dataclass
class LivePlant:
    """The running demo plant, seen from a browser test."""

    base_url: str
    process: AndonProcess
    #: Password by username; each user is named after its role (operator, supervisor, ...).
    passwords: dict[str, str]
    _tokens: dict[str, str] = field(default_factory=dict)

    def login(self, page: Page, role: Role | str) -> None:
        """Log in through the login form as the user of ``role``; returns on the overview."""
        name = role.value if isinstance(role, Role) else role
        page.goto(f"{self.base_url}/login")
        page.fill("#username", name)
        page.fill("#password", self.passwords[name])
        page.click(".login button[type=submit]")
        page.wait_for_url(lambda url: "/login" not in url)

    def token(self, role: Role | str) -> str:
        name = role.value if isinstance(role, Role) else role
        if name not in self._tokens:
            self._tokens[name] = api_login(self.base_url, name, self.passwords[name])
        return self._tokens[name]

    def api(
        self, method: str, path: str, role: Role | str = Role.ADMIN, body: Any = None
    ) -> tuple[int, Any]:
        """(status, decoded JSON) of an API call made as the user of ``role``."""
        request = urllib.request.Request(
            f"{self.base_url}{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={
                "Authorization": f"Bearer {self.token(role)}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                text = response.read()
                return int(response.status), json.loads(text) if text else None
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def screenshot(self, page: Page, name: str) -> Path:
        """Save what the page shows to docs/screenshots/<name>.png (the README shows some)."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path))
        return path


def states_known(base_url: str, token: str) -> bool:
    status, _ = http_get(f"{base_url}/api/v1/health", 2.0, token="")
    if status == 0:
        return False
    assets = http_get_json(f"{base_url}/api/v1/assets", token=token)
    bound = [a for a in assets if a["has_states"]]
    return bool(bound) and all(a["state"] is not None for a in bound)
