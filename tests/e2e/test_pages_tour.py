"""Every shop-floor page (login, overview and drill-down, operator screen and reason picker, tags
and a tag's trend, system) opened in the browser against the demo plant: it renders without a
script error, shows live data, and is captured to docs/screenshots/ at 1280x800."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from _live_plant import LivePlant

from andon.domain.users import Role

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.e2e

FILLER = "Plant1/Bottling/Line1/Filler1"
TEMPERATURE = "DemoPlant/Line1/Filler1/Process/Temperature"


def _watch_errors(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            errors.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    return errors


def test_shop_floor_pages_render_live_and_are_captured(live_plant: LivePlant, page: Page) -> None:
    errors = _watch_errors(page)
    base = live_plant.base_url
    page.goto(f"{base}/login")
    live_plant.screenshot(page, "login")
    live_plant.login(page, Role.OPERATOR)

    page.locator("#live-status.ok").wait_for()  # the overview is subscribed to the states
    assert page.locator(".tile .state-name").count() == 6  # every machine with its state name
    assert "Times: Europe/Prague" in page.locator(".page-head").inner_text()
    live_plant.screenshot(page, "overview")

    page.goto(f"{base}/plant/Plant1/Bottling/Line1")
    page.locator("#live-status.ok").wait_for()
    assert page.locator(".tile").count() == 3
    assert page.locator(".tile .run-name", has_text="PO-1001").count() == 3
    live_plant.screenshot(page, "plant-line")

    page.goto(f"{base}/operator")
    assert page.locator(".pick-list a").count() == 11  # the site, 2 areas, 2 lines, 6 machines
    live_plant.screenshot(page, "operator-choose")

    page.goto(f"{base}/operator/{FILLER}")
    page.locator("#live-status.ok").wait_for()
    row = page.locator("table.stops tbody tr").first
    row.wait_for(timeout=60_000)
    live_plant.screenshot(page, "operator")
    row.get_by_role("button", name="Reason…").click()
    page.locator("#picker .picker .reason").first.wait_for()
    live_plant.screenshot(page, "operator-reasons")

    page.goto(f"{base}/tags?prefix=DemoPlant/Line1/Filler1/Process/")
    page.locator("#live-status.ok").wait_for()
    assert page.locator(f'td[data-tag="{TEMPERATURE}"]').count() == 1
    live_plant.screenshot(page, "tags")

    page.goto(f"{base}/tags/view?path={TEMPERATURE}")
    page.locator("#trend .uplot canvas").wait_for()
    assert "samples" in page.locator(".trend-status").inner_text() or "periods" in (
        page.locator(".trend-status").inner_text()
    )
    live_plant.screenshot(page, "tag-detail")

    live_plant.login(page, Role.ENGINEER)
    page.goto(f"{base}/system")
    assert page.locator(".arch .node-box[data-edge]").count() == 2
    assert page.locator(".arch .node-box[data-edge] .badge.ok").count() >= 2
    live_plant.screenshot(page, "system")
    assert errors == []
