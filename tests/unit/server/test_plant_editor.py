"""The plant file's editor: a check reports every problem with field and line and changes
nothing; a save is atomic, keeps a backup, is audited with hashes and diff in the same
transaction, and refuses (changing nothing) without a comment, on a conflict, on a passive node,
with a bad text, or when the audit entry cannot be written."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from andon.demo import demo_plant_copy, demo_plant_file
from andon.domain import DomainError
from andon.server.plant_editor import (
    PlantConflictError,
    PlantEditor,
    PlantInvalidError,
    PlantRefusedError,
    PlantUnavailableError,
)
from andon.server.plant_file import load_plant, text_sha256
from andon.storage.audit import AuditLog
from andon.storage.migrate import upgrade_database

EXAMPLE = demo_plant_file().read_text(encoding="utf-8")
FILLER = 'path = "Plant1/Bottling/Line1/Filler1"'
T_SAVE = 1_772_406_000_123  # 2026-03-01T23:00:00.123Z


class Rig:
    def __init__(self, directory: Path) -> None:
        self.directory = directory / "config"
        self.directory.mkdir()
        self.path = self.directory / "plant.toml"
        self.path.write_text(EXAMPLE, encoding="utf-8")
        self.path.chmod(0o640)
        url = f"sqlite:///{directory / 'andon.db'}"
        upgrade_database(url)
        self.audit = AuditLog(url)
        self.refusal: str | None = None
        running = load_plant(self.path).sha256
        self.editor = PlantEditor(
            self.path, running, self.audit, refusal=lambda: self.refusal, clock=lambda: T_SAVE
        )

    def files(self) -> list[str]:
        return sorted(p.name for p in self.directory.iterdir())

    def unchanged(self) -> bool:
        """The file is the original, alone (no backup, no temporary file), and nothing was
        audited."""
        return (
            self.path.read_text(encoding="utf-8") == EXAMPLE
            and self.files() == ["plant.toml"]
            and self.audit.list(entity="plant_file") == []
        )


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path)
    yield rig
    rig.audit.close()


def _edited(text: str = EXAMPLE) -> str:
    return text.replace("units_per_minute = 120", "units_per_minute = 125")


def test_the_current_file_and_whether_it_is_the_running_one(rig: Rig) -> None:
    version = rig.editor.current()
    assert version.text == EXAMPLE
    assert version.sha256 == text_sha256(EXAMPLE.encode()) == rig.editor.running_sha256
    assert not version.differs_from_running
    rig.path.write_text(_edited(), encoding="utf-8")  # e.g. changed at the console
    assert rig.editor.current().differs_from_running


def test_a_check_reports_every_problem_with_its_field_and_line(rig: Rig) -> None:
    text = (
        EXAMPLE.replace('kind = "area"', 'kind = "hall"', 1)
        .replace('reason = "jam"', 'reason = "jammed"')
        .replace('item = "water-05"\nasset = "Plant1/Bottling/Line1/Capper1"',
                 'item = "water-5"\nasset = "Plant1/Bottling/Line1/Capper1"')
    )  # fmt: skip
    lines = text.splitlines()
    checked = rig.editor.check(text)
    assert not checked.ok
    found = {(p.field, p.line): p.message for p in checked.problems}
    area_line = lines.index('kind = "hall"') + 1
    jam_line = next(i for i, line in enumerate(lines, 1) if '"jammed"' in line)
    rate_line = lines.index('item = "water-5"') + 1
    assert found[("asset[1].kind", area_line)].startswith("'hall' is not one of")
    assert found[("state_map.simulator.state[6].reason", jam_line)] == "unknown reason 'jammed'"
    assert found[("rate[1].item", rate_line)] == "unknown item 'water-5'"
    assert rig.unchanged()


def test_a_broken_toml_text_names_its_line(rig: Rig) -> None:
    checked = rig.editor.check(EXAMPLE.replace("[[item]]", "[[item]", 1))
    [problem] = checked.problems
    assert problem.field == ""
    assert problem.message.startswith("not valid TOML")
    assert "line" in problem.message
    assert rig.unchanged()


def test_a_valid_text_checks_with_a_summary_and_its_diff(rig: Rig) -> None:
    checked = rig.editor.check(_edited())
    assert checked.ok
    assert ("assets with states", 6) in checked.summary
    assert "-units_per_minute = 120\n+units_per_minute = 125\n" in checked.diff
    assert rig.unchanged()


def test_a_save_replaces_the_file_keeps_a_backup_and_is_audited(rig: Rig) -> None:
    before = rig.editor.current().sha256
    saved = rig.editor.save("alice", _edited(), before, "  Filler1 runs faster after the retrofit ")
    assert saved.applied is False
    assert rig.path.read_text(encoding="utf-8") == _edited()
    assert stat.S_IMODE(rig.path.stat().st_mode) == 0o640  # the file keeps its permissions
    backup = "plant.toml.20260301T230000123Z.bak"
    assert rig.files() == ["plant.toml", backup]  # and no temporary file behind
    assert (rig.directory / backup).read_text(encoding="utf-8") == EXAMPLE
    assert saved.backup == str(rig.directory / backup)
    assert (saved.previous_sha256, saved.sha256) == (before, text_sha256(_edited().encode()))
    [entry] = rig.audit.list(entity="plant_file")
    assert (entry.id, entry.username, entry.action) == (saved.audit_id, "alice", "plant_file.saved")
    assert (entry.entity_id, entry.comment) == (
        "plant.toml",
        "Filler1 runs faster after the retrofit",
    )
    assert entry.before == {"sha256": before, "bytes": len(EXAMPLE.encode())}
    assert entry.after["sha256"] == saved.sha256
    assert entry.after["backup"] == backup
    assert "-units_per_minute = 120\n+units_per_minute = 125\n" in entry.after["diff"]
    assert "next server start" in entry.after["applied"]
    # The running configuration is still the one loaded at start-up.
    assert rig.editor.current().differs_from_running


def test_a_second_save_gets_its_own_backup(rig: Rig) -> None:
    first = rig.editor.save("alice", _edited(), rig.editor.current().sha256, "faster")
    rig.editor.save("alice", EXAMPLE, first.sha256, "back to the old rate")
    assert len(rig.files()) == 3
    assert rig.path.read_text(encoding="utf-8") == EXAMPLE
    assert not rig.editor.current().differs_from_running


def test_browser_line_ends_are_saved_as_the_file_has_them(rig: Rig) -> None:
    crlf = _edited().replace("\n", "\r\n")
    rig.editor.save("alice", crlf, rig.editor.current().sha256, "from a browser")
    assert rig.path.read_bytes() == _edited().encode()


@pytest.mark.parametrize(
    ("text", "base", "comment", "error", "message"),
    [
        (_edited(), None, "  ", DomainError, "a comment is required"),
        (EXAMPLE, None, "no change", DomainError, "nothing to save"),
        (_edited(), "0" * 64, "stale", PlantConflictError, "changed on disk since you loaded it"),
        (EXAMPLE.replace(FILLER, FILLER + '\nspeed = 3'), None, "bad", PlantInvalidError,
         r"1 problem\(s\); nothing was saved"),
    ],
)  # fmt: skip
def test_a_refused_save_changes_nothing(
    rig: Rig, text: str, base: str | None, comment: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        rig.editor.save("alice", text, base or rig.editor.current().sha256, comment)
    assert rig.unchanged()


def test_an_invalid_save_lists_the_problems(rig: Rig) -> None:
    with pytest.raises(PlantInvalidError) as refused:
        rig.editor.save(
            "alice",
            EXAMPLE.replace(FILLER, FILLER + "\nspeed = 3"),
            rig.editor.current().sha256,
            "x",
        )
    [problem] = refused.value.problems
    assert problem.field == "asset[3]"
    assert "unknown key(s) ['speed']" in problem.message
    # The line of the entry's [[asset]] header, just above its path (lines count from 1).
    assert problem.line == EXAMPLE.splitlines().index(FILLER)


def test_a_passive_node_refuses_to_save(rig: Rig) -> None:
    rig.refusal = "this node is passive for domain main; writes go to the active node"
    with pytest.raises(PlantRefusedError, match="this node is passive"):
        rig.editor.save("alice", _edited(), rig.editor.current().sha256, "faster")
    assert rig.unchanged()


def test_without_the_audit_entry_the_file_is_not_replaced(rig: Rig, tmp_path: Path) -> None:
    # A database without the audit table: the entry cannot be written, so nothing may change.
    rig.editor.audit = AuditLog(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        with pytest.raises(PlantUnavailableError, match="audit entry could not be recorded"):
            rig.editor.save("alice", _edited(), rig.editor.current().sha256, "faster")
    finally:
        rig.editor.audit.close()
    assert rig.path.read_text(encoding="utf-8") == EXAMPLE
    assert rig.files() == ["plant.toml"]


def test_an_unreadable_file_is_a_clear_error(rig: Rig) -> None:
    os.remove(rig.path)
    with pytest.raises(PlantUnavailableError, match="cannot read the plant file"):
        rig.editor.current()
    with pytest.raises(PlantUnavailableError, match="cannot read the plant file"):
        rig.editor.save("alice", _edited(), "0" * 64, "faster")


def test_the_demo_edits_its_own_copy_never_the_shipped_example(tmp_path: Path) -> None:
    copy = demo_plant_copy(tmp_path / "demo")
    assert copy == (tmp_path / "demo" / "plant.toml").resolve()
    assert copy.read_text(encoding="utf-8") == EXAMPLE
    copy.write_text(_edited(), encoding="utf-8")  # saved from the admin page
    assert demo_plant_copy(tmp_path / "demo").read_text(encoding="utf-8") == _edited()
    assert demo_plant_file().read_text(encoding="utf-8") == EXAMPLE
