"""The web frame: every page family is guarded by the one role table (login redirect, friendly
403), the navigation shows a user only the pages their role opens, and times are shown on the
site's clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _mes_api_rig import MesApi
from fastapi.testclient import TestClient
from starlette.routing import Route

from andon.domain.users import Role
from andon.storage.types import Sample
from andon.testing.mes import T0, TAG
from andon.web.access import WEB_PAGES

HOUR = 3_600_000


@pytest.fixture
def api(tmp_path: Path) -> Iterator[MesApi]:
    api = MesApi(f"sqlite:///{tmp_path / 'andon.db'}")
    states = [(T0 - 3 * HOUR, 1), (T0 - 2 * HOUR, 10), (T0 - HOUR, 1)]
    api.mes.service.offer([Sample(TAG + "State", ts, code) for ts, code in states])
    yield api
    api.close()


def _anonymous(api: MesApi) -> TestClient:
    return TestClient(api.app, follow_redirects=False)


def _mounted(api: MesApi) -> list[str]:
    routes = {r.path for r in api.app.router.routes if isinstance(r, Route)}
    return [p.path for p in WEB_PAGES if p.path in routes]


def _nav(html: str) -> str:
    start = html.index('<nav class="mainnav"')
    return html[start : html.index("</nav>", start)]


def test_our_page_families_are_in_the_table_and_mounted(api: MesApi) -> None:
    assert {"/", "/operator", "/tags", "/system"} <= set(_mounted(api))
    roles = {p.path: p.role for p in WEB_PAGES}
    assert roles["/system"] is Role.ENGINEER
    assert (roles["/supervisor"], roles["/analysis"], roles["/admin"]) == (
        Role.SUPERVISOR,
        Role.OPERATOR,
        Role.ADMIN,
    )


def test_every_mounted_page_enforces_its_role_from_the_table(api: MesApi) -> None:
    checked = 0
    for path in _mounted(api):
        required = next(p.role for p in WEB_PAGES if p.path == path)
        for role in Role:
            response = api.client(role).get(path)
            if role.allows(required):
                assert response.status_code != 403, f"{role.value}: {path}"
            else:
                assert response.status_code == 403, f"{role.value}: {path}"
                assert f"needs the role <strong>{required.value}</strong>" in response.text
                assert "Ask an administrator" in response.text
                checked += 1
    assert checked >= 4


@pytest.mark.parametrize("path", ["/", "/plant/Site/Area", "/operator", "/tags", "/system"])
def test_pages_without_a_login_go_to_the_login_page(api: MesApi, path: str) -> None:
    response = _anonymous(api).get(path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")


def test_fragments_without_a_login_answer_401_with_hx_redirect(api: MesApi) -> None:
    response = _anonymous(api).get(
        "/fragments/operator/panel?asset=Site/Area/Line/Cell",
        headers={"HX-Request": "true", "HX-Current-URL": "http://x/operator/Site/Area/Line/Cell"},
    )
    assert response.status_code == 401
    assert response.headers["hx-redirect"] == "/login?next=/operator/Site/Area/Line/Cell"


def test_the_navigation_shows_only_what_the_role_opens(api: MesApi) -> None:
    operator = _nav(api.client(Role.OPERATOR).get("/").text)
    assert 'href="/"' in operator
    assert 'href="/operator"' in operator
    assert 'href="/tags"' in operator
    assert 'href="/system"' not in operator
    assert 'href="/admin"' not in operator
    assert 'href="/supervisor"' not in operator
    engineer = _nav(api.client(Role.ENGINEER).get("/").text)
    assert 'href="/system"' in engineer
    assert 'href="/admin"' not in engineer
    assert 'class="active" aria-current="page">Overview' in engineer
    tags = _nav(api.client(Role.ENGINEER).get("/tags").text)
    assert 'class="active" aria-current="page">Tags' in tags


def test_times_are_on_the_site_clock(api: MesApi) -> None:
    # T0 is midnight in Prague (23:00 UTC); the stop began two hours earlier.
    html = api.client(Role.OPERATOR).get("/operator/Site/Area/Line/Cell").text
    assert 'data-tz="Europe/Prague"' in html
    assert "Times: Europe/Prague" in html
    assert "<td>22:00:00</td>" in html
    assert f'data-server-now="{T0}"' in html
