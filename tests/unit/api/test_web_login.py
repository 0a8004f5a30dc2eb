"""The pages behind the login: redirects, the session cookie, the login form, logout."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _auth_rig import SECRET, AuthRig
from fastapi.testclient import TestClient

from andon.api.auth import SESSION_COOKIE
from andon.domain.users import Role

#: What a browser sends with a form of this server's own page (see andon.web.csrf).
OWN_PAGE = {"Origin": "http://testserver"}


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[AuthRig]:
    rig = AuthRig(tmp_path)
    rig.users.create_user("root", "alice", SECRET, Role.SUPERVISOR, "Alice")
    yield rig
    rig.users.repository.close()


def test_pages_redirect_to_login_and_the_cookie_logs_in(rig: AuthRig) -> None:
    page = rig.anon.get("/?view=line1")
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=/%3Fview%3Dline1"
    form = rig.anon.get("/login?next=/%3Fview%3Dline1")
    assert form.status_code == 200
    assert 'name="password" type="password"' in form.text
    assert 'action="/login?next=/%3Fview%3Dline1"' in form.text

    response = rig.anon.post(
        "/login?next=/%3Fview%3Dline1",
        data={"username": "alice", "password": SECRET},
        headers=OWN_PAGE,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/?view=line1"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie or "samesite=lax" in cookie.lower()
    assert SECRET not in cookie

    session = TestClient(rig.app, follow_redirects=False)
    session.cookies.set(SESSION_COOKIE, rig.anon.cookies[SESSION_COOKIE])
    home = session.get("/")
    assert home.status_code == 200
    assert "Alice" in home.text
    assert "supervisor" in home.text
    assert 'action="/logout"' in home.text
    assert session.get("/fragments/machines").status_code == 200
    assert session.get("/api/v1/auth/me").json()["username"] == "alice"  # the API takes it too

    out = session.post("/logout", headers=OWN_PAGE)
    assert out.status_code == 303
    assert out.headers["location"] == "/login"
    assert "Max-Age=0" in out.headers["set-cookie"] or "expires=" in out.headers["set-cookie"]
    stale = TestClient(rig.app, follow_redirects=False)
    stale.cookies.set(SESSION_COOKIE, rig.anon.cookies[SESSION_COOKIE])
    assert stale.get("/").status_code == 303  # the session was revoked, not just forgotten


def test_fragment_without_login_is_401_with_hx_redirect(rig: AuthRig) -> None:
    response = rig.anon.get(
        "/fragments/machines", headers={"HX-Request": "true", "HX-Current-URL": "http://x/?a=1"}
    )
    assert response.status_code == 401
    assert response.headers["hx-redirect"] == "/login?next=/%3Fa%3D1"


def test_wrong_password_on_the_form_shows_an_error(rig: AuthRig) -> None:
    response = rig.anon.post(
        "/login", data={"username": "alice", "password": "nope-nope-nope"}, headers=OWN_PAGE
    )
    assert response.status_code == 401
    assert "wrong username or password" in response.text
    assert 'value="alice"' in response.text
    assert "nope-nope-nope" not in response.text
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil"])
def test_login_never_redirects_off_site(rig: AuthRig, target: str) -> None:
    response = rig.anon.post(
        "/login",
        params={"next": target},
        data={"username": "alice", "password": SECRET},
        headers=OWN_PAGE,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/"


def test_login_page_fits_a_panel_and_a_tablet(rig: AuthRig) -> None:
    html = rig.anon.get("/login").text
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert 'autocomplete="current-password"' in html
    assert 'href="/static/andon.css"' in html
    assert "Log out" not in html  # nobody is logged in on the login page
    assert rig.anon.get("/static/andon.css").status_code == 200
