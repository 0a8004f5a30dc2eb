"""The edit dialogs' wall-clock times in the browser (static/api-forms.js): a time the site's
clocks skip (spring forward) or pass twice (fall back) is refused with a clear message instead
of silently moving by an hour; an untouched field goes back as the exact instant it showed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).resolve().parents[2] / "src/andon/web/static/api-forms.js"
TZ = "Europe/Berlin"  # 2026: forward on 29 March 02:00, back on 25 October 03:00


@pytest.fixture
def forms(page: Page) -> Page:
    page.set_content("<!doctype html><html><body></body></html>")
    page.add_script_tag(content=SCRIPT.read_text(encoding="utf-8"))
    return page


def _instants(page: Page, text: str) -> list[str]:
    found: list[Any] = page.evaluate(
        "([t, tz]) => andonForms.wallInstants(t, tz).map((ms) => new Date(ms).toISOString())",
        [text, TZ],
    )
    return [str(iso) for iso in found]


def _refusal(page: Page, text: str) -> str:
    message: str = page.evaluate(
        "([t, tz]) => { try { return andonForms.wallToIso(t, tz); }"
        " catch (e) { return e.message; } }",
        [text, TZ],
    )
    return message


def test_an_ordinary_time_names_one_instant(forms: Page) -> None:
    assert _instants(forms, "2026-03-02T08:15:30") == ["2026-03-02T07:15:30.000Z"]
    assert _instants(forms, "2026-07-01T08:00") == ["2026-07-01T06:00:00.000Z"]
    assert _refusal(forms, "2026-07-01T08:00") == "2026-07-01T06:00:00.000Z"


def test_a_time_in_the_spring_forward_gap_is_refused(forms: Page) -> None:
    assert _instants(forms, "2026-03-29T02:30") == []
    assert "does not exist on the site's clock" in _refusal(forms, "2026-03-29T02:30")
    assert _instants(forms, "2026-03-29T03:00") == ["2026-03-29T01:00:00.000Z"]


def test_a_time_in_the_fall_back_hour_is_refused_naming_both(forms: Page) -> None:
    assert _instants(forms, "2026-10-25T02:30") == [
        "2026-10-25T00:30:00.000Z",
        "2026-10-25T01:30:00.000Z",
    ]
    assert "happens twice on the site's clock" in _refusal(forms, "2026-10-25T02:30")


def _form_page(page: Page, field: str) -> list[str]:
    """Serve a page with one edit form (``field``: its datetime input) on a made-up origin;
    the bodies the form sends to its API URL are collected in the returned list."""
    html = f"""<!doctype html><html><body>
      <form data-api-url="/api/v1/x" data-api-method="POST" data-tz="{TZ}">
        <label for="f-at">At</label>{field}
        <p class="error" role="alert"></p><span class="status"></span>
        <button type="submit">Go</button>
      </form><script src="/api-forms.js"></script></body></html>"""
    sent: list[str] = []

    def serve(route: Any) -> None:
        url = route.request.url
        if url.endswith("/api/v1/x"):
            sent.append(route.request.post_data or "")
            route.fulfill(status=200, content_type="application/json", body="{}")
        elif url.endswith("/api-forms.js"):
            route.fulfill(content_type="text/javascript", body=SCRIPT.read_text(encoding="utf-8"))
        else:
            route.fulfill(content_type="text/html", body=html)

    page.route("http://andon.test/**", serve)
    page.goto("http://andon.test/form")
    return sent


def test_an_untouched_field_sends_its_exact_instant(page: Page) -> None:
    # The second 02:30 of the fall-back night, with milliseconds the field cannot show.
    instant = 1_792_891_800_123  # 2026-10-25T01:30:00.123Z
    sent = _form_page(
        page,
        '<input id="f-at" name="at" type="datetime-local" step="1" value="2026-10-25T02:30:00"'
        f' data-initial="2026-10-25T02:30:00" data-instant="{instant}">',
    )
    with page.expect_request("**/api/v1/x"):
        page.click("button[type=submit]")
    assert sent == ['{"at":"2026-10-25T01:30:00.123Z"}']


def test_a_typed_time_the_clocks_pass_twice_is_refused_in_the_form(page: Page) -> None:
    sent = _form_page(
        page, '<input id="f-at" name="at" type="datetime-local" step="1" data-initial="">'
    )
    page.fill("#f-at", "2026-10-25T02:30:00")
    page.click("button[type=submit]")
    alert = page.locator("[role=alert]")
    alert.filter(has_text="happens twice").wait_for()
    text = alert.text_content() or ""
    assert text.startswith("At: 2026-10-25 02:30 happens twice on the site's clock")
    assert sent == []  # refused before anything was sent
