"""Browser tests against a real demo plant: ``andon demo`` (embedded broker, server on SQLite,
two simulated lines, the example plant file) as a child process on free ports, with a user of
each role, and Playwright driving Debian's chromium (never a downloaded browser).

Fixtures for every browser test (part 2's pages too):

* ``live_plant`` (session): ``base_url``, ``passwords`` by username (= role name),
  ``login(page, role)``, ``api(method, path, role, body)`` and ``screenshot(page, name)``
  (docs/screenshots/<name>.png at 1280x800).
* ``browser`` (session) and ``page`` (a fresh 1280x800 context per test).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from _live_plant import START_TIMEOUT_S, VIEWPORT, LivePlant, states_known

from andon.demo import read_credentials
from andon.domain.users import Role
from andon.testing.ports import free_port
from andon.testing.processes import AndonProcess, http_get, wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


@pytest.fixture(scope="session")
def live_plant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePlant]:
    workdir = tmp_path_factory.mktemp("e2e-demo")
    http_port = free_port()
    process = AndonProcess(
        ["demo", "--dir", str(workdir / "demo"), "--http-port", str(http_port),
         "--mqtt-port", str(free_port())],
        workdir / "demo.log",
        name="andon demo",
        cwd=workdir,
    )  # fmt: skip
    process.start()
    try:
        base_url = f"http://127.0.0.1:{http_port}"
        credentials = workdir / "demo" / "credentials.txt"
        wait_until(
            lambda: credentials.exists() and http_get(f"{base_url}/api/v1/health", 2.0)[0] != 0,
            START_TIMEOUT_S,
            "andon demo did not write its credentials and serve",
            processes=[process],
        )
        plant = LivePlant(base_url, process, read_credentials(credentials))
        for role in (Role.SUPERVISOR, Role.ENGINEER):
            password = secrets.token_urlsafe(16)
            body = {"username": role.value, "password": password, "role": role.value}
            status, answer = plant.api("POST", "/api/v1/users", Role.ADMIN, body)
            assert status == 201, answer
            plant.passwords[role.value] = password
        admin = plant.token(Role.ADMIN)
        wait_until(
            lambda: states_known(base_url, admin),
            START_TIMEOUT_S,
            "the demo's machines never all reported a state",
            processes=[process],
        )
        yield plant
    finally:
        process.stop(15.0)


@pytest.fixture(scope="session")
def browser(chromium_executable: str) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright  # a dev dependency (pyproject)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_executable)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()
