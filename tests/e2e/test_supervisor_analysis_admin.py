"""The supervisor, analysis and admin pages in a real browser against the running demo plant: a
supervisor adds a missed run, corrects a count and sees both audit entries (confirmed through
the API); an operator gets no Admin entry and a 403 on /admin; an admin checks a plant file with a
mistake (shown with its line) and saves a valid one (audited, for the next start); the analysis
page draws its charts and shows the API's figures. Each page is saved to docs/screenshots/
(1280x800)."""

from __future__ import annotations

import html
import json
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from _live_plant import LivePlant

from andon.domain.users import Role

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.e2e

SITE_ZONE = ZoneInfo("Europe/Prague")  # the example plant's site
LINE = "Plant1/Bottling/Line1"
FILLER = "Plant1/Bottling/Line1/Filler1"


def _wall(moment: datetime) -> str:
    """A datetime-local input value on the site's clock."""
    return moment.astimezone(SITE_ZONE).strftime("%Y-%m-%dT%H:%M:%S")


def _ms(moment: datetime) -> int:
    return int(moment.timestamp()) * 1000


def _dialog_submit(page: Page) -> None:
    page.locator("dialog[open] button[type=submit]").click()
    page.locator("dialog[open]").wait_for(state="detached")  # closes once the API said yes


def _add_missed_run(live_plant: LivePlant, page: Page, now: datetime) -> str:
    """Through the "Add a missed run" dialog; checked through the API. Returns the run's id."""
    run_id = f"E2E-{secrets.token_hex(3)}"
    start, end = now - timedelta(hours=3), now - timedelta(hours=2)
    page.get_by_role("button", name="Add a missed run").click()
    page.locator("dialog[open] #f-asset").select_option(FILLER)
    page.locator("#f-order_id").select_option("PO-1001")
    page.fill("#f-start", _wall(start))
    page.fill("#f-end", _wall(end))
    page.fill("#f-id", run_id)
    page.fill("#f-comment", "ran on the night shift, never started on the panel")
    _dialog_submit(page)
    row = page.locator(f'#runs-table tr[data-id="{run_id}"]')
    row.wait_for()
    status, runs = live_plant.api("GET", f"/api/v1/runs?asset={quote(FILLER)}", Role.OPERATOR)
    assert status == 200
    [added] = [r for r in runs if r["id"] == run_id]
    assert (added["start_ms"], added["end_ms"]) == (_ms(start), _ms(end))
    assert start.strftime("%Y-%m-%d %H:%M") in row.inner_text()  # shown on the site's clock
    return run_id


def _history(page: Page, row_selector: str) -> str:
    """The text of a record's audit history, opened from its row."""
    page.locator(row_selector).get_by_role("button", name="History").click()
    history = page.locator("dialog[open] .history")
    history.wait_for()
    text = history.inner_text()
    page.locator("dialog[open] [data-close-dialog]").click()
    return text


def _correct_counts(live_plant: LivePlant, page: Page, now: datetime) -> str:
    """Through the "Correct counts" dialog; checked through the API. Returns the edit's id."""
    page.locator("#counts").get_by_role("button", name="Correct counts").click()
    page.locator("dialog[open] #f-asset").select_option(FILLER)
    page.fill("#f-start", _wall(now - timedelta(minutes=50)))
    page.fill("#f-end", _wall(now - timedelta(minutes=40)))
    page.locator("#f-mode").select_option("set")
    page.fill("#f-infeed", "120")
    page.fill("#f-outfeed", "100")
    page.fill("#f-comment", "counted by hand after the sensor failed")
    _dialog_submit(page)
    edit_row = page.locator("#count-edits-table tr[data-edit-id]").first
    edit_row.wait_for()
    edit_id = edit_row.get_attribute("data-edit-id") or ""
    status, edits = live_plant.api(
        "GET", f"/api/v1/assets/{quote(FILLER)}/counts/edits", Role.OPERATOR
    )
    assert status == 200
    [edit] = [e for e in edits if str(e["id"]) == edit_id]
    assert edit["requested"] == {"infeed": 120, "outfeed": 100, "waste": None}
    assert edit["user"] == "supervisor"
    return edit_id


def test_supervisor_adds_a_missed_run_edits_a_count_and_sees_the_audit(
    live_plant: LivePlant, page: Page
) -> None:
    now = datetime.now(SITE_ZONE).replace(microsecond=0)
    # A plan for the Gantt: scheduled through the API, drawn on the page.
    plan = {"order_id": "PO-1001", "asset": LINE, "start": (now + timedelta(hours=2)).isoformat(),
            "end": (now + timedelta(hours=6)).isoformat(), "comment": "e2e plan"}  # fmt: skip
    status, planned = live_plant.api("POST", "/api/v1/schedule", Role.SUPERVISOR, plan)
    assert status == 201, planned
    live_plant.login(page, Role.SUPERVISOR)
    page.goto(f"{live_plant.base_url}/supervisor?asset={quote(FILLER)}")
    page.locator("#schedule .gantt[data-drawn] canvas").first.wait_for()
    page.locator(f'#schedule-table tr[data-id="{planned["id"]}"]').wait_for()  # the cell's line

    run_id = _add_missed_run(live_plant, page, now)
    live_plant.screenshot(page, "supervisor")
    history = _history(page, f'#runs-table tr[data-id="{run_id}"]')
    assert "run.added" in history
    assert "never started on the panel" in history
    assert "supervisor" in history

    edit_id = _correct_counts(live_plant, page, now)
    history = _history(page, f'#count-edits-table tr[data-edit-id="{edit_id}"]')
    assert "count_edit.added" in history
    assert "counted by hand after the sensor failed" in history
    status, audit = live_plant.api(
        "GET", f"/api/v1/audit?entity=count_edit&entity_id={edit_id}", Role.SUPERVISOR
    )
    assert status == 200
    assert [(a["action"], a["username"]) for a in audit] == [("count_edit.added", "supervisor")]


def test_operator_is_refused_the_admin_page(live_plant: LivePlant, page: Page) -> None:
    live_plant.login(page, Role.OPERATOR)
    page.goto(f"{live_plant.base_url}/analysis")
    assert page.locator('.mainnav a[href="/analysis"]').count() == 1
    assert page.locator('.mainnav a[href="/admin"]').count() == 0
    assert page.locator('.mainnav a[href="/supervisor"]').count() == 0
    response = page.goto(f"{live_plant.base_url}/admin")
    assert response is not None
    assert response.status == 403
    assert "not for your role" in page.locator("main").inner_text()
    assert page.locator("#users-table").count() == 0


def _edit_plant_file(page: Page, change: tuple[str, str]) -> str:
    """Replace text in the editor's textarea; returns the new text."""
    editor = page.locator("#plant-text")
    text = editor.input_value().replace(*change, 1)
    editor.fill(text)
    return text


def _show_editor(page: Page) -> None:
    """Scroll the page so that the editor, from its status note to the answer, fills the view."""
    page.locator("#plant-status").evaluate("e => e.scrollIntoView({block: 'start'})")


def test_admin_sees_users_and_the_plant_configuration(live_plant: LivePlant, page: Page) -> None:
    live_plant.login(page, Role.ADMIN)
    page.goto(f"{live_plant.base_url}/admin")
    for name in ("admin", "operator", "supervisor", "engineer"):
        page.locator(f'#users-table tr[data-username="{name}"]').wait_for()
    assert page.locator("code.plant-source").inner_text().endswith("plant.toml")
    assert FILLER in page.locator("#plant").inner_text()

    # The plant file's editor: a Check names the mistake and its line, changing nothing ...
    status, before = live_plant.api("GET", "/api/v1/admin/plant")
    assert status == 200
    assert before["differs_from_running"] is False
    page.locator("#plant-editor-box > summary").click()
    typo = _edit_plant_file(page, ('kind = "line"', 'kind = "lane"'))
    page.locator("#plant-check").click()
    problems = page.locator("#plant-result .plant-problems")
    problems.wait_for()
    typo_line = typo.splitlines().index('kind = "lane"') + 1
    assert "'lane' is not one of" in problems.inner_text()
    assert problems.locator(f'.line-link[data-line="{typo_line}"]').count() == 1
    assert live_plant.api("GET", "/api/v1/admin/plant")[1]["sha256"] == before["sha256"]
    problems.locator(".line-link").click()  # selects the line in the editor
    selected = page.locator("#plant-text").evaluate(
        "t => t.value.slice(t.selectionStart, t.selectionEnd)"
    )
    assert selected == 'kind = "lane"'
    _show_editor(page)
    live_plant.screenshot(page, "admin-plant-check")
    # ... and a Save of a valid change stores it, audited, for the next server start.
    _edit_plant_file(page, ('kind = "lane"', 'kind = "line"'))
    faster = _edit_plant_file(page, ("units_per_minute = 120", "units_per_minute = 125"))
    page.fill("#plant-comment", "Filler1 retrofitted: 125 bottles a minute")
    page.locator("#plant-save").click()
    page.locator("#plant-result .ok").wait_for()
    assert "takes effect at the next server start" in page.locator("#plant-result").inner_text()
    assert "differs from the configuration" in page.locator("#plant-status").inner_text()
    status, after = live_plant.api("GET", "/api/v1/admin/plant")
    assert status == 200
    assert after["text"] == faster
    assert after["differs_from_running"] is True
    assert page.locator("#plant-base-hash").get_attribute("value") == after["sha256"]
    status, audit = live_plant.api("GET", "/api/v1/audit?entity=plant_file")
    assert status == 200
    assert audit[0]["comment"] == "Filler1 retrofitted: 125 bottles a minute"
    assert audit[0]["after"]["sha256"] == after["sha256"]
    # The saved state: the note that the file waits for the next start, the editor, the answer.
    page.evaluate("document.getElementById('plant-text').scrollTop = 0")
    _show_editor(page)
    live_plant.screenshot(page, "admin")


def _figure(page: Page, key: str) -> float | None:
    value = page.locator(f'.kpi[data-figure="{key}"]').get_attribute("data-value")
    return None if not value else float(value)


def _between(value: float | None, a: float | None, b: float | None, slack: float) -> bool:
    """``value`` lies between two API answers taken before and after the page was drawn."""
    if value is None or a is None or b is None:
        return value is None and (a is None or b is None)
    return min(a, b) - slack <= value <= max(a, b) + slack


def test_analysis_draws_its_charts_with_the_api_figures(live_plant: LivePlant, page: Page) -> None:
    live_plant.login(page, Role.OPERATOR)
    url = f"{live_plant.base_url}/analysis?asset={quote(LINE)}&by=day"
    page.goto(url)
    api_url = html.unescape(page.locator("#summary").get_attribute("data-api") or "")
    assert api_url.startswith("/api/v1/oee?")
    # The plant is live: figures move between two requests. The page drawn between two API
    # answers must lie between them (counts exactly; ratios within a small slack).
    status, before = live_plant.api("GET", api_url, Role.OPERATOR)
    assert status == 200
    page.goto(url)
    status, after = live_plant.api("GET", api_url, Role.OPERATOR)
    assert status == 200

    charts = page.locator(".chart[data-chart]")
    assert charts.count() == 5  # trend, counts against target, two Paretos, timeline
    for i in range(charts.count()):
        charts.nth(i).locator("canvas").first.wait_for()

    good = _figure(page, "good")
    first, last = before["total"]["account"], after["total"]["account"]
    assert good is not None
    assert first["good_count"] <= good <= last["good_count"]
    for key in ("availability", "performance", "quality", "oee"):
        shown = _figure(page, key)
        assert _between(shown, before["total"][key], after["total"][key], 0.01), key

    trend = json.loads(page.locator('.chart[data-kind="trend"]').get_attribute("data-chart") or "")
    days = [(b["start_ms"], b["end_ms"]) for b in after["buckets"]]
    assert [(b["start_ms"], b["end_ms"]) for b in trend["buckets"]] == days
    timeline = json.loads(
        page.locator('.chart[data-kind="timeline"]').get_attribute("data-chart") or ""
    )
    assert timeline["rows"] == after["assets"]
    assert timeline["bars"], "the demo's machines have states"
    pareto_assets: list[Any] = json.loads(
        page.locator("#pareto-assets .chart").get_attribute("data-chart") or ""
    )
    assert {row["key"] for row in pareto_assets} <= set(after["assets"])
    live_plant.screenshot(page, "analysis")
