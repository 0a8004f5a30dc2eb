"""Cross-site request forgery: writes made with the session cookie are refused unless they come
from this server's own pages (Origin, else Sec-Fetch-Site, else htmx, else the CSRF token);
the login and logout forms too; bearer-token calls are not affected."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _mes_api_rig import MesApi
from fastapi.testclient import TestClient

from andon.api.auth import SESSION_COOKIE
from andon.domain.users import Role
from andon.storage.types import Sample
from andon.testing.auth import TEST_PASSWORD
from andon.testing.mes import CELL, T0, TAG
from andon.web.csrf import CSRF_COOKIE, same_origin

OWN = "http://testserver"
EVIL = "http://evil.example:8081"
MODE = "/fragments/operator/mode"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[MesApi]:
    api = MesApi(f"sqlite:///{tmp_path / 'andon.db'}")
    api.mes.service.offer([Sample(TAG + "State", T0 - 3_600_000, 1)])  # running, in Production
    api.mes.flush()
    yield api
    api.close()


def _session(api: MesApi, role: Role = Role.OPERATOR) -> TestClient:
    """A browser logged in with the session cookie (no bearer token)."""
    user = api.users.repository.get_user(f"test-{role.value}")
    assert user is not None
    client = TestClient(api.app, follow_redirects=False)
    client.cookies.set(SESSION_COOKIE, api.users.issue(user, "session").token)
    return client


def _change_mode(client: TestClient, mode: str, **headers: str) -> int:
    response = client.post(MODE, data={"asset": CELL, "mode": mode}, headers=headers)
    return response.status_code


def test_a_form_posted_from_another_site_is_refused_and_changes_nothing(api: MesApi) -> None:
    browser = _session(api)
    refused = browser.post(MODE, data={"asset": CELL, "mode": "Idle"}, headers={"Origin": EVIL})
    assert refused.status_code == 403
    assert "another site" in refused.json()["detail"]
    assert api.audit(entity="asset") == []
    assert _change_mode(browser, "Idle", Origin=OWN) == 200
    assert len(api.audit(entity="asset")) == 1


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Sec-Fetch-Site": "same-site"}, 403),  # a sibling subdomain: SameSite=Lax lets it in
        ({"Sec-Fetch-Site": "cross-site"}, 403),
        ({"Sec-Fetch-Site": "same-origin"}, 200),
        ({}, 403),  # nothing says where it comes from
        ({"HX-Request": "true"}, 200),  # htmx: a cross-site form cannot set the header
        ({"Origin": "null"}, 403),
        ({"Origin": EVIL, "HX-Request": "true"}, 403),  # the Origin decides when present
        ({"Origin": "https://testserver"}, 200),  # https outside, http inside a TLS proxy
        ({"Origin": "http://testserver:8080"}, 403),
        ({"Origin": "https://plant.example", "X-Forwarded-Host": "plant.example"}, 200),
    ],
)
def test_where_a_cookie_write_comes_from_decides(
    api: MesApi, headers: dict[str, str], status: int
) -> None:
    assert _change_mode(_session(api), "Idle", **headers) == status
    assert len(api.audit(entity="asset")) == (1 if status == 200 else 0)


def test_the_csrf_token_of_the_page_lets_a_plain_form_through(api: MesApi) -> None:
    browser = _session(api)
    page = browser.get(f"/operator/{CELL}")
    assert page.status_code == 200
    token = browser.cookies[CSRF_COOKIE]
    assert f'name="csrf_token" value="{token}"' in page.text  # the logout form carries it
    assert "HttpOnly" in page.headers["set-cookie"]
    wrong = browser.post(MODE, data={"asset": CELL, "mode": "Idle", "csrf_token": "x" * 43})
    assert wrong.status_code == 403
    right = browser.post(MODE, data={"asset": CELL, "mode": "Idle", "csrf_token": token})
    assert right.status_code == 200, right.text
    api.mes.now += 60_000  # one mode change per instant
    header = browser.post(MODE, data={"asset": CELL, "mode": "Changeover"},
                          headers={"X-CSRF-Token": token})  # fmt: skip
    assert header.status_code == 200
    assert len(api.audit(entity="asset")) == 2


def test_bearer_token_calls_are_not_affected(api: MesApi) -> None:
    script = api.client(Role.OPERATOR)
    assert _change_mode(script, "Idle", Origin=EVIL) == 200
    api.mes.now += 60_000  # one mode change per instant
    answer = script.put(
        f"/api/v1/assets/{CELL}/mode", json={"mode": "Changeover"}, headers={"Origin": EVIL}
    )
    assert answer.status_code == 200, answer.text


def test_the_json_api_with_the_cookie_is_guarded_too(api: MesApi) -> None:
    browser = _session(api)
    url = f"/api/v1/assets/{CELL}/mode"
    refused = browser.put(url, json={"mode": "Idle"}, headers={"Origin": EVIL})
    assert refused.status_code == 403
    assert browser.put(url, json={"mode": "Idle"}, headers={"Origin": OWN}).status_code == 200


def test_login_and_logout_from_another_site_are_refused(api: MesApi) -> None:
    anon = TestClient(api.app, follow_redirects=False)
    form = {"username": "test-operator", "password": TEST_PASSWORD}
    forged = anon.post("/login", data=form, headers={"Origin": EVIL})
    assert forged.status_code == 403
    assert SESSION_COOKIE not in forged.headers.get("set-cookie", "")
    bare = anon.post("/login", data=form)  # no Origin, no token: refused too
    assert bare.status_code == 403

    page = anon.get("/login")
    token = anon.cookies[CSRF_COOKIE]
    assert f'name="csrf_token" value="{token}"' in page.text
    logged_in = anon.post("/login", data={**form, "csrf_token": token})
    assert logged_in.status_code == 303
    assert anon.get("/operator").status_code == 200

    assert anon.post("/logout", headers={"Origin": EVIL}).status_code == 403
    assert anon.get("/operator").status_code == 200  # still logged in
    assert anon.post("/logout", headers={"Origin": OWN}).status_code == 303


def test_same_origin_compares_host_and_port() -> None:
    assert same_origin("http://127.0.0.1:8080", ["127.0.0.1:8080"])
    assert same_origin("https://plant", ["plant"])
    assert same_origin("http://[::1]:8080", ["[::1]:8080"])
    assert not same_origin("http://127.0.0.1:8081", ["127.0.0.1:8080"])
    assert not same_origin("http://a.plant", ["b.plant"])
    assert not same_origin("null", ["plant"])
    assert not same_origin("http://plant:99999", ["plant"])
    assert not same_origin("ftp://plant", ["plant"])
