"""The configuration reference in README.md and docs/ is generated; it must match the code."""

from __future__ import annotations

from pathlib import Path

from andon.settings_doc import render_settings_reference, update_readme

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_reference_is_current() -> None:
    current = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert current == render_settings_reference(), "run `make docs`"


def test_readme_reference_section_is_current() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme == update_readme(readme), "run `make docs`"


def test_every_setting_has_help_text() -> None:
    reference = render_settings_reference()
    rows = [line for line in reference.splitlines() if line.startswith("| `")]
    assert len(rows) > 20
    assert all(not row.rstrip().endswith("|  |") for row in rows), "a setting lacks help"
