"""The plant file's editor through the API (GET/PUT /api/v1/admin/plant) and the admin page
(Check and Save forms): admins only, every problem with its line, optimistic conflict check,
passive-node refusal, the audit entry, and a saved file that takes effect at the next start."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _auth_rig import AuthRig
from _plant_rig import PLANT_TOML, PlantApi

from andon.domain.users import Role
from andon.server.plant_file import text_sha256

FASTER = PLANT_TOML.replace("units_per_minute = 60", "units_per_minute = 75")
HTMX = {"HX-Request": "true"}
#: A cell whose state map does not exist, and a rate of an unknown item (two problems).
BROKEN = PLANT_TOML.replace('state_map = "m"', 'state_map = "missing"').replace(
    'item = "w"\nasset', 'item = "beer"\nasset'
)


@pytest.fixture
def plant(tmp_path: Path) -> Iterator[PlantApi]:
    plant = PlantApi(tmp_path)
    yield plant
    plant.close()


@pytest.fixture
def cluster_plant(tmp_path: Path) -> Iterator[PlantApi]:
    plant = PlantApi(tmp_path, cluster=True)
    yield plant
    plant.close()


def _line(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), start=1) if needle in line)


def _put(plant: PlantApi, text: str, base: str | None = None, comment: str = "faster filler",
         role: Role = Role.ADMIN) -> Any:  # fmt: skip
    body = {"text": text, "base_hash": base or text_sha256(PLANT_TOML.encode()), "comment": comment}
    return plant.client(role).put("/api/v1/admin/plant", json=body)


def _unchanged(plant: PlantApi) -> bool:
    audited = plant.client().get("/api/v1/audit", params={"entity": "plant_file"}).json()
    return (
        plant.path.read_text(encoding="utf-8") == PLANT_TOML
        and not plant.backups()
        and not plant.leftovers()
        and audited == []
    )


# -- the API ----------------------------------------------------------------------------------


def test_get_answers_the_file_its_hash_and_that_it_is_running(plant: PlantApi) -> None:
    response = plant.client().get("/api/v1/admin/plant")
    assert response.status_code == 200
    body = response.json()
    assert body["text"] == PLANT_TOML
    assert body["path"] == str(plant.path)
    assert body["sha256"] == body["running_sha256"] == text_sha256(PLANT_TOML.encode())
    assert body["differs_from_running"] is False


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.SUPERVISOR, Role.ENGINEER])
def test_only_admins_read_or_save_the_plant_file(plant: PlantApi, role: Role) -> None:
    read = plant.client(role).get("/api/v1/admin/plant")
    assert read.status_code == 403
    assert "needs role admin" in read.json()["detail"]
    assert _put(plant, FASTER, role=role).status_code == 403
    page = {"text": FASTER, "base_hash": text_sha256(PLANT_TOML.encode()), "comment": "x"}
    for url in ("/admin/plant/check", "/fragments/admin/plant"):
        assert plant.client(role).post(url, data=page, headers=HTMX).status_code == 403
    assert _unchanged(plant)


def test_put_saves_audits_and_says_it_takes_effect_at_the_next_start(plant: PlantApi) -> None:
    response = _put(plant, FASTER, comment="the filler was retrofitted")
    assert response.status_code == 200, response.text
    saved = response.json()
    assert saved["applied"] is False
    assert "takes effect at the next server start" in saved["message"]
    assert plant.path.read_text(encoding="utf-8") == FASTER
    [backup] = plant.backups()
    assert backup.read_text(encoding="utf-8") == PLANT_TOML
    assert saved["backup"] == str(backup)
    assert not plant.leftovers()
    [entry] = plant.client().get("/api/v1/audit", params={"entity": "plant_file"}).json()
    assert (entry["id"], entry["username"]) == (saved["audit_id"], "test-admin")
    assert (entry["action"], entry["comment"]) == ("plant_file.saved", "the filler was retrofitted")
    assert entry["before"]["sha256"] == text_sha256(PLANT_TOML.encode())
    assert entry["after"]["sha256"] == saved["sha256"] == text_sha256(FASTER.encode())
    assert "-units_per_minute = 60\n+units_per_minute = 75\n" in entry["after"]["diff"]
    after = plant.client().get("/api/v1/admin/plant").json()
    assert after["differs_from_running"] is True
    assert after["running_sha256"] == text_sha256(PLANT_TOML.encode())
    # The server still runs the model it started with.
    assert plant.mes.service.plant.rate_list[0].units_per_minute == 60


def test_put_answers_422_with_every_problem_and_its_line(plant: PlantApi) -> None:
    response = _put(plant, BROKEN)
    assert response.status_code == 422
    body = response.json()
    assert "2 problem(s)" in body["detail"]
    problems = {p["field"]: p for p in body["problems"]}
    assert problems["asset[3].state_map"]["line"] == _line(BROKEN, '"missing"')
    assert problems["asset[3].state_map"]["message"] == "unknown state map 'missing'"
    assert problems["rate[0].item"]["line"] == _line(BROKEN, '"beer"')
    assert _unchanged(plant)


def test_put_answers_409_when_the_file_changed_since_it_was_read(plant: PlantApi) -> None:
    stale = text_sha256(b"an older version")
    response = _put(plant, FASTER, base=stale)
    assert response.status_code == 409
    assert "changed on disk since you loaded it" in response.json()["detail"]
    assert response.json()["current_sha256"] == text_sha256(PLANT_TOML.encode())
    assert _unchanged(plant)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"text": FASTER, "base_hash": "x"}, "comment"),
        ({"text": FASTER, "base_hash": "x", "comment": "y", "extra": 1}, "extra"),
        ("not json", "json"),
    ],
)
def test_put_refuses_a_malformed_body(plant: PlantApi, body: Any, needle: str) -> None:
    if isinstance(body, str):
        response = plant.client().put(
            "/api/v1/admin/plant", content=body, headers={"Content-Type": "application/json"}
        )
    else:
        response = plant.client().put("/api/v1/admin/plant", json=body)
    assert response.status_code == 422
    assert needle in response.text.lower()
    assert _unchanged(plant)


def test_put_without_a_comment_is_refused(plant: PlantApi) -> None:
    response = _put(plant, FASTER, comment=" ")
    assert response.status_code == 422
    assert "a comment is required" in response.json()["detail"]
    assert _unchanged(plant)


def test_a_body_larger_than_any_plant_file_is_refused_unread(plant: PlantApi) -> None:
    response = plant.client().put(
        "/api/v1/admin/plant",
        content=b"x" * (9 * 2**20),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert _unchanged(plant)


def test_a_passive_node_refuses_to_save_with_409(cluster_plant: PlantApi) -> None:
    cluster_plant.refusal = "this node is passive for domain main; writes go to the active node"
    response = _put(cluster_plant, FASTER)
    assert response.status_code == 409
    assert "this node is passive" in response.json()["detail"]
    page = {"text": FASTER, "base_hash": text_sha256(PLANT_TOML.encode()), "comment": "x"}
    form = cluster_plant.client().post("/fragments/admin/plant", data=page, headers=HTMX)
    assert form.status_code == 409
    assert "this node is passive" in form.text
    # Reading and checking change nothing: a passive node still answers them.
    assert cluster_plant.client().get("/api/v1/admin/plant").status_code == 200
    check = cluster_plant.client().post("/admin/plant/check", data=page, headers=HTMX)
    assert check.status_code == 200
    assert _unchanged(cluster_plant)
    cluster_plant.refusal = None  # promoted: the same save goes through
    assert _put(cluster_plant, FASTER).status_code == 200


def test_without_a_plant_file_the_editor_is_503(tmp_path: Path) -> None:
    rig = AuthRig(tmp_path)
    try:
        response = rig.client(Role.ADMIN).get("/api/v1/admin/plant")
        assert response.status_code == 503
        assert "no plant file is configured" in response.json()["detail"]
    finally:
        rig.users.repository.close()


# -- the admin page ---------------------------------------------------------------------------


def _textarea(page: str) -> str:
    found = re.search(r'<textarea id="plant-text"[^>]*>\n(.*?)</textarea>', page, re.S)
    assert found is not None
    return html.unescape(found.group(1))


def test_the_admin_page_shows_the_editor_with_the_file(plant: PlantApi) -> None:
    page = plant.client().get("/admin").text
    assert _textarea(page) == PLANT_TOML
    assert f'name="base_hash" value="{text_sha256(PLANT_TOML.encode())}"' in page
    assert 'hx-post="/admin/plant/check"' in page
    assert 'hx-post="/fragments/admin/plant"' in page
    assert "is the configuration this server is running" in page
    assert "G/N/Cell/State" in page  # the running configuration's tables are still there


def test_check_on_the_page_lists_every_problem_with_its_line(plant: PlantApi) -> None:
    form = {"text": BROKEN, "base_hash": "ignored by a check"}
    response = plant.client().post("/admin/plant/check", data=form, headers=HTMX)
    assert response.status_code == 200
    answer = response.text
    assert "2 problem(s) found; nothing was changed" in answer
    line = _line(BROKEN, '"missing"')
    assert f'data-line="{line}"' in answer
    assert "<code>asset[3].state_map</code>: unknown state map &#39;missing&#39;" in answer
    assert "<code>rate[0].item</code>" in answer
    assert _unchanged(plant)


def test_check_on_the_page_shows_a_valid_text_and_its_diff(plant: PlantApi) -> None:
    form = {"text": FASTER.replace("\n", "\r\n")}  # as a browser sends a textarea
    answer = plant.client().post("/admin/plant/check", data=form, headers=HTMX).text
    assert "No problems found" in answer
    assert "4 assets" in answer
    assert '<span class="del">-units_per_minute = 60</span>' in answer
    assert '<span class="add">+units_per_minute = 75</span>' in answer
    assert _unchanged(plant)


def test_save_on_the_page_stores_the_file_and_says_when_it_applies(plant: PlantApi) -> None:
    base = text_sha256(PLANT_TOML.encode())
    form = {"text": FASTER.replace("\n", "\r\n"), "base_hash": base, "comment": "retrofit"}
    response = plant.client().post("/fragments/admin/plant", data=form, headers=HTMX)
    assert response.status_code == 200, response.text
    answer = response.text
    assert "takes effect at the next server start" in answer
    assert plant.path.read_bytes() == FASTER.encode()  # line ends as the file had them
    new_hash = text_sha256(FASTER.encode())
    # Out of band: the next save is based on the new version; the page says the file differs.
    assert f'id="plant-base-hash" name="base_hash" value="{new_hash}" hx-swap-oob="true"' in answer
    assert 'id="plant-status" class="plant-status differs"' in answer
    [entry] = plant.client().get("/api/v1/audit", params={"entity": "plant_file"}).json()
    assert (entry["username"], entry["comment"]) == ("test-admin", "retrofit")
    page = plant.client().get("/admin").text
    assert "differs from the configuration this server is running" in page
    # Saving the same form again is a conflict: its base is no longer the file on disk.
    again = plant.client().post("/fragments/admin/plant", data=form, headers=HTMX)
    assert again.status_code == 409
    assert "changed on disk since you loaded it" in again.text


def test_save_on_the_page_refuses_a_bad_text_with_its_problems(plant: PlantApi) -> None:
    form = {"text": BROKEN, "base_hash": text_sha256(PLANT_TOML.encode()), "comment": "x"}
    response = plant.client().post("/fragments/admin/plant", data=form, headers=HTMX)
    assert response.status_code == 422
    assert "2 problem(s); nothing was saved" in response.text
    assert f'data-line="{_line(BROKEN, chr(34) + "beer" + chr(34))}"' in response.text
    missing_comment = {**form, "text": FASTER, "comment": ""}
    response = plant.client().post("/fragments/admin/plant", data=missing_comment, headers=HTMX)
    assert response.status_code == 422
    assert "a comment is required" in response.text
    assert _unchanged(plant)
