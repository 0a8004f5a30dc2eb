"""The plant file: the shipped demo plant loads; bad files name the file and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _mes_rig import CELL, small_plant

from andon.demo import demo_plant_file
from andon.domain import AssetPath, StateType
from andon.edge.sources.simulator import STATE_NAMES, demo_plant
from andon.server.plant_file import PlantFileError, load_plant, parse_plant


def test_the_demo_plant_file_loads_and_binds_every_simulated_machine() -> None:
    plant = load_plant(demo_plant_file())
    machines = demo_plant().machines
    assert len(plant.bound_assets) == len(machines)
    for machine in machines:
        tag = f"DemoPlant/{machine.line}/{machine.machine_id}/State/Code"
        asset = plant.bindings[tag].asset
        state_map = plant.state_maps[asset]
        assert {c: state_map.resolve(c).name for c in STATE_NAMES} == dict(STATE_NAMES)
        run = next(r for r in plant.runs if r.asset.is_ancestor_of(asset))
        item = plant.orders[run.order_id].item_id
        cycle = plant.rates.cycle_time_ms(item, asset)
        assert cycle is not None
        assert float(cycle) == pytest.approx(60_000 / machine.ideal_rate_per_min)
    site = plant.tree.get(AssetPath.parse("Plant1"))
    assert site.timezone == "Europe/Prague"
    calendar = plant.calendars[site.path]
    assert [p.name for p in calendar.patterns] == ["Morning", "Afternoon", "Night"]
    assert plant.state_maps[plant.bound_assets[0]].resolve(1).type is StateType.RUNNING
    assert {r.asset.name for r in plant.runs} == {"Line1", "Line2"}


def _with_cell(**changes: Any) -> dict[str, Any]:
    doc = small_plant()
    cell = next(a for a in doc["asset"] if a["path"] == CELL)
    cell.update(changes)
    return doc


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (small_plant(extra=1), "(top): unknown key(s) ['extra']"),
        (_with_cell(kind="machine"), "asset[3].kind: 'machine' is not one of"),
        (_with_cell(state_map="nope"), "asset[3].state_map: unknown state map 'nope'"),
        (_with_cell(path="Site/Area/Nowhere/Cell"), "asset[3].path: cannot add"),
        (_with_cell(tags={"state": 5}), "asset[3].tags.state: must be a tag path"),
        (_with_cell(tags={"speed": "x"}), "asset[3].tags: unknown key(s) ['speed']"),
        (small_plant(rate=[{"item": "zz", "asset": CELL, "units_per_minute": 1}]),
         "rate[0].item: unknown item 'zz'"),
        (small_plant(rate=[{"item": "w", "asset": CELL, "units_per_minute": 0}]),
         "rate[0].units_per_minute: ideal rate of w"),
        (small_plant(reason=[{"id": "a", "name": "A", "parent": "b"}]),
         "reason: reason 'a': unknown parent 'b'"),
        (small_plant(calendar=[{"site": "Site", "shift": [
            {"name": "D", "start": "06:00", "end": "25:00"}]}]),
         "calendar[0].shift[0].end:"),
        (small_plant(run=[
            {"id": "a", "order": "PO1", "asset": "Site", "start": "2026-01-01T00:00:00Z"},
            {"id": "b", "order": "PO1", "asset": "Site", "start": "2026-01-02T00:00:00Z"}]),
         "run[1].start: Site: run 'b'"),
        (small_plant(run=[{"id": "a", "order": "PO1", "asset": "Site",
                           "start": "2026-01-01T00:00:00"}]),
         "run[0].start: '2026-01-01T00:00:00' needs a UTC offset"),
    ],
)  # fmt: skip
def test_bad_plant_files_name_the_file_and_the_field(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(PlantFileError) as error:
        parse_plant(doc, "bad.toml")
    assert str(error.value).startswith("bad.toml: ")
    assert message in str(error.value)


def test_unreadable_or_invalid_toml_names_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "plant.toml"
    broken.write_text("[[asset]\n", encoding="utf-8")
    with pytest.raises(PlantFileError, match=r"plant\.toml: not valid TOML"):
        load_plant(broken)
    with pytest.raises(PlantFileError, match="cannot read the plant file"):
        load_plant(tmp_path / "missing.toml")
