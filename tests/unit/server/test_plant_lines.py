"""Where a field is in a TOML text, and plant files with several mistakes: every one is reported
once, with its line, and what only repeats another's problem is not."""

from __future__ import annotations

import pytest

from andon.demo import demo_plant_file
from andon.server.plant_file import PlantFileError, load_plant, parse_plant_text
from andon.server.plant_lines import field_line, parse_field, scan_lines

EXAMPLE = demo_plant_file().read_text(encoding="utf-8")


def _line_of(text: str, needle: str, occurrence: int = 0) -> int:
    """The line of the ``occurrence``-th (from 0) line holding ``needle``, comments left out."""
    lines = enumerate(text.splitlines(), start=1)
    hits = [n for n, line in lines if needle in line and not line.startswith("#")]
    return hits[occurrence]


def test_fields_parse_into_keys_and_indexes() -> None:
    assert parse_field("calendar[0].shift[1].start") == ("calendar", 0, "shift", 1, "start")
    assert parse_field("state_map.simulator.state[5]") == ("state_map", "simulator", "state", 5)
    assert parse_field("(top)") == ("(top)",)


@pytest.mark.parametrize(
    ("field", "needle", "occurrence"),
    [
        ("asset[3].tags.state", 'state = "DemoPlant/Line1/Filler1/State/Code"', 0),
        ("asset[3]", "[[asset]]", 3),
        ("asset[3].tags", "[asset.tags]", 0),
        ("asset[0].timezone", "timezone =", 0),
        ("state_map.simulator.state[5].reason", '"planned-stop" }', 0),
        ("state_map.simulator.unknown_reason", "unknown_reason =", 0),
        ("reason", "[[reason]]", 0),
        ("reason[2].parent", 'parent = "mechanical"', 1),
        ("calendar[0].shift[1].breaks[0].start", '"Dinner"', 0),
        ("calendar[0].holidays", "holidays =", 0),
        ("mode[0].accounts_as", "accounts_as =", 0),
        ("run[1].start", "start = ", 1 + 6),  # 3 shifts x (start, break start) come first
        ("asset[3].counter_max.nothing", "counter_max", 0),  # the nearest parent found
    ],
)  # fmt: skip
def test_the_example_plant_fields_are_found_on_their_lines(
    field: str, needle: str, occurrence: int
) -> None:
    assert field_line(EXAMPLE, field) == _line_of(EXAMPLE, needle, occurrence)


def test_a_field_that_is_nowhere_has_no_line() -> None:
    assert field_line(EXAMPLE, "(top)") is None
    assert field_line("", "asset[0].path") is None


def test_strings_comments_inline_tables_and_nested_arrays_do_not_confuse_the_scan() -> None:
    text = (
        '# [[asset]] in a comment\n'
        'a = "x = [ # not a comment"  # a comment [\n'
        'b = """\n'
        '[[asset]]\n'
        '"""\n'
        '[[asset]]\n'
        "path = 'C:\\dir'\n"
        'tags = { state = "s", "mode" = "m\\"}" }\n'
        'grid = [\n'
        '  [1, 2], { k = "v]" },\n'
        '  "3",\n'
        ']\n'
        '[[asset]]\n'
        'x.y = 1\n'
        '[asset.sub]\n'
        'z = 1979-05-27 07:32:00\n'
    )  # fmt: skip
    found = scan_lines(text)
    assert found[("a",)] == 2
    assert found[("b",)] == 3
    assert found[("asset", 0)] == 6  # the header inside the multi-line string is not one
    assert found[("asset", 0, "tags", "mode")] == 8
    assert found[("asset", 0, "grid", 0, 1)] == 10
    assert found[("asset", 0, "grid", 1, "k")] == 10
    assert found[("asset", 0, "grid", 2)] == 11
    assert found[("asset", 1, "x", "y")] == 14
    assert found[("asset", 1, "sub", "z")] == 16
    assert ("asset", 2) not in found


def test_every_mistake_is_reported_once_with_its_line() -> None:
    text = (
        EXAMPLE.replace('kind = "area"', 'kind = "hall"', 1)  # Plant1/Bottling
        .replace('{ code = 2, name = "Idle", type = "not_scheduled"',
                 '{ code = 2, name = "Idle", type = "idling"')
        .replace('name = "Afternoon"\nstart = "14:00"', 'name = "Afternoon"\nstart = "14:70"')
        .replace('quantity = 10000000\nstate = "running"\n\n[[run]]\nid = "RUN-1002"',
                 'quantity = -1\nstate = "running"\n\n[[run]]\nid = "RUN-1002"')
    )  # fmt: skip
    with pytest.raises(PlantFileError) as refused:
        parse_plant_text(text.encode(), "plant.toml")
    problems = {p.field: p for p in refused.value.problems}
    # Bottling's cells, rates and run are not reported again (they only name the broken area);
    # the state map with a wrong state is reported once, not once per asset that uses it.
    assert sorted(problems) == [
        "asset[1].kind",
        "calendar[0].shift[1].start",
        "order[1].quantity",
        "state_map.simulator.state[1].type",
    ]
    assert problems["asset[1].kind"].line == _line_of(text, 'kind = "hall"')
    assert problems["calendar[0].shift[1].start"].line == _line_of(text, '"14:70"')
    assert problems["order[1].quantity"].line == _line_of(text, "quantity = -1")
    assert problems["state_map.simulator.state[1].type"].line == _line_of(text, '"idling"')
    message = str(refused.value)
    assert message.count("\n") == 3  # one line per problem, each naming the file
    assert all(line.startswith("plant.toml: ") for line in message.splitlines())
    assert "asset[1].kind (line " in message


def test_the_server_loads_the_file_and_remembers_its_hash(tmp_path: object) -> None:
    model = load_plant(demo_plant_file())
    assert len(model.sha256) == 64
    assert model.sha256 == parse_plant_text(EXAMPLE.encode(), "x").sha256
