"""The shop-floor pages in a real browser against the running demo plant: logging in, an operator
giving a stop its reason and starting (then ending) a run -- confirmed through the API --, a live
value changing on screen without a reload, and the System page kept from operators."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from _live_plant import LivePlant

from andon.domain.users import Role

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.e2e

FILLER = "Plant1/Bottling/Line1/Filler1"
TEMPERATURE = "DemoPlant/Line1/Filler1/Process/Temperature"


def test_log_in_and_land_on_the_plant_overview(live_plant: LivePlant, page: Page) -> None:
    page.goto(f"{live_plant.base_url}/")
    assert "/login" in page.url  # not logged in: the login form first
    page.fill("#username", "operator")
    page.fill("#password", "not-the-password")
    page.click(".login button[type=submit]")
    assert "wrong username or password" in page.locator(".login .error").inner_text()
    live_plant.login(page, Role.OPERATOR)
    assert page.title() == "Plant 1 · Overview · Andon"
    assert page.locator(".tile").count() == 2  # the site's two areas
    assert "Operator" in page.locator(".topbar .user").inner_text()
    page.locator(".topbar form button").click()  # log out
    page.wait_for_url(re.compile(r"/login$"))


def test_operator_gives_a_stop_a_reason_and_starts_a_run(live_plant: LivePlant, page: Page) -> None:
    page.on("dialog", lambda dialog: dialog.accept())  # "End run ... now?"
    live_plant.login(page, Role.OPERATOR)
    page.goto(f"{live_plant.base_url}/operator/{FILLER}")
    # The simulated machine stops every few seconds; the list reloads when its state changes.
    row = page.locator("table.stops tbody tr").first
    row.wait_for(timeout=60_000)
    start_ms = int(row.get_attribute("data-stop") or "")
    current = row.locator("td").nth(3).inner_text()
    leaf = "Jam" if "Drive fault" in current else "Drive fault"
    row.get_by_role("button", name="Reason…").click()
    picker = page.locator("#picker .picker")
    picker.get_by_role("button", name="Mechanical").click()
    page.locator("#picker .trail strong", has_text="Mechanical").wait_for()
    picker.get_by_role("button", name=leaf, exact=True).click()
    page.locator("#downtime-note .flash", has_text=f"Reason set: Mechanical / {leaf}").wait_for()
    assert page.locator("#picker .picker").count() == 0  # the picker closed

    status, intervals = live_plant.api(
        "GET", f"/api/v1/assets/{FILLER}/states?start={start_ms}&end={start_ms + 1}",
        Role.OPERATOR,
    )  # fmt: skip
    assert status == 200
    [interval] = [i for i in intervals if i["start_ms"] == start_ms]
    assert interval["reason_id"] == ("jam" if leaf == "Jam" else "drive")
    status, audit = live_plant.api(
        "GET", f"/api/v1/audit?entity=state_interval&entity_id={FILLER}@{start_ms}"
    )
    assert status == 200
    assert (audit[0]["action"], audit[0]["username"]) == ("state_interval.reason", "operator")

    page.select_option("#order", "PO-1001")
    page.get_by_role("button", name="Start run").click()
    flash = page.locator("#panel .flash", has_text="started for order PO-1001")
    flash.wait_for()
    run_id = re.search(r"Run (\S+) started", flash.inner_text())[1]  # type: ignore[index]
    status, runs = live_plant.api("GET", f"/api/v1/runs?asset={FILLER}", Role.OPERATOR)
    assert status == 200
    [run] = [r for r in runs if r["id"] == run_id]
    assert (run["order_id"], run["asset"], run["end"]) == ("PO-1001", FILLER, None)

    # Leave the plant as it was for the other tests: end the run from the same screen.
    page.get_by_role("button", name=f"End run {run_id}").click()
    page.locator("#panel .flash", has_text=f"Run {run_id} ended").wait_for()
    status, runs = live_plant.api("GET", f"/api/v1/runs?asset={FILLER}", Role.OPERATOR)
    assert [r["end"] is not None for r in runs if r["id"] == run_id] == [True]


def test_a_live_value_changes_on_screen_without_a_reload(live_plant: LivePlant, page: Page) -> None:
    live_plant.login(page, Role.OPERATOR)
    page.goto(f"{live_plant.base_url}/tags?prefix=DemoPlant/Line1/Filler1/Count/")
    page.locator("#live-status.ok").wait_for()
    page.evaluate("window.__sameDocument = true")  # gone if the page were loaded again
    cells = page.locator("td.value[data-tag]")
    before = cells.all_inner_texts()
    page.wait_for_function(
        "before => [...document.querySelectorAll('td.value[data-tag]')]"
        ".some((td, i) => td.textContent !== before[i])",
        arg=before,
        timeout=60_000,
    )
    assert page.evaluate("window.__sameDocument") is True
    assert cells.all_inner_texts() != before


def test_an_operator_does_not_see_system_and_is_refused_it(
    live_plant: LivePlant, page: Page
) -> None:
    live_plant.login(page, Role.OPERATOR)
    nav = page.locator("nav.mainnav")
    assert nav.get_by_role("link", name="Overview").count() == 1
    assert nav.get_by_role("link", name="System").count() == 0
    assert nav.get_by_role("link", name="Admin").count() == 0
    response = page.goto(f"{live_plant.base_url}/system")
    assert response is not None
    assert response.status == 403
    assert "needs the role engineer" in page.locator(".message").inner_text()
    live_plant.screenshot(page, "forbidden")
