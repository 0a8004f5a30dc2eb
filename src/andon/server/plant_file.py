"""The plant file (TOML): assets, tag bindings, state maps, reasons, modes, items, rates, shift
calendars, orders and runs, checked into domain objects.

Every error names the file, the field and, where the text is known, its line
(``plant.toml: asset[3].tags.state (line 42): ...``); every mistake of the file is reported at
once, and the whole file is rejected: a server never starts on half a plant. The format is shown
by ``examples/plant.toml``; the rules live in ``andon.domain`` (this module only translates).
``parse_plant_text`` is the one entry for text: the server's start-up (``load_plant``) and the
admin's editor (``andon.server.plant_editor``) check a file by the same rules.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from andon.domain import (
    AssetPath,
    AssetTree,
    IdealRate,
    IdealRates,
    Item,
    Mode,
    ProductionOrder,
    ReasonTree,
    Run,
    ShiftCalendar,
    StateMap,
)
from andon.server._plant_reader import PlantFileError, PlantProblem, Reader
from andon.server._plant_sections import (
    BUILTIN_MODES,
    COUNTERS,
    Binding,
    read_assets,
    read_calendars,
    read_items_and_rates,
    read_modes,
    read_orders_and_runs,
    read_reasons,
    read_state_maps,
)
from andon.server.plant_lines import field_line

__all__ = [
    "BUILTIN_MODES",
    "COUNTERS",
    "Binding",
    "PlantFileError",
    "PlantModel",
    "PlantProblem",
    "load_plant",
    "parse_plant",
    "parse_plant_text",
    "text_sha256",
]


def text_sha256(raw: bytes) -> str:
    """The hash that names one version of a plant file (hex SHA-256 of its bytes)."""
    return hashlib.sha256(raw).hexdigest()


@dataclass(slots=True)
class PlantModel:
    source: str
    tree: AssetTree
    bindings: dict[str, Binding]  # tag path -> binding
    state_maps: dict[AssetPath, StateMap]
    counter_max: dict[AssetPath, int]
    reasons: ReasonTree
    modes: dict[str, Mode]
    items: dict[str, Item]
    rates: IdealRates
    rate_list: list[IdealRate]
    calendars: dict[AssetPath, ShiftCalendar]  # by site
    orders: dict[str, ProductionOrder]
    runs: list[Run] = field(default_factory=list)
    #: ``text_sha256`` of the file this model was read from ("": built from a document).
    sha256: str = ""
    #: Site calendar per asset, remembered: every count delta asks for it.
    _calendar_of: dict[AssetPath, ShiftCalendar | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def bound_assets(self) -> list[AssetPath]:
        """Assets with a state tag: the ones that have intervals, counts and rollups."""
        return sorted(self.state_maps)

    def calendar_for(self, asset: AssetPath) -> ShiftCalendar | None:
        try:
            return self._calendar_of[asset]
        except KeyError:
            found = self._calendar_of[asset] = self.calendars.get(self.tree.site_of(asset).path)
            return found


def load_plant(path: Path) -> PlantModel:
    """Read and check a plant file; raises ``PlantFileError`` naming the file and the fields."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        problem = PlantProblem("", f"cannot read the plant file: {exc}")
        raise PlantFileError(str(path), [problem]) from None
    return parse_plant_text(raw, str(path))


def parse_plant_text(raw: bytes, source: str) -> PlantModel:
    """Check the bytes of a plant file; every problem carries the line of its field."""
    try:
        text = raw.decode("utf-8")
        doc = tomllib.loads(text)
    except UnicodeDecodeError as exc:
        problem = PlantProblem("", f"not UTF-8 text: {exc}")
        raise PlantFileError(source, [problem]) from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with the place: "(at line 3, column 9)".
        raise PlantFileError(source, [PlantProblem("", f"not valid TOML: {exc}")]) from None
    try:
        model = parse_plant(doc, source)
    except PlantFileError as exc:
        raise exc.with_lines(lambda name: field_line(text, name)) from None
    model.sha256 = text_sha256(raw)
    return model


def parse_plant(doc: Mapping[str, Any], source: str) -> PlantModel:
    """Check a plant document; raises ``PlantFileError`` with every problem found
    (``andon.server._plant_sections``)."""
    r = Reader(source)
    with r.collect():
        known = {"asset", "state_map", "reason", "mode", "item", "rate", "calendar", "order", "run"}
        r.check_keys(doc, known)
    reason_tree = read_reasons(r, doc)
    modes = read_modes(r, doc)
    state_maps_by_name, broken_maps = read_state_maps(r, doc, reason_tree)
    assets = read_assets(r, doc, state_maps_by_name, broken_maps)
    items, rate_list = read_items_and_rates(r, doc, assets.tree)
    calendars = read_calendars(r, doc, assets.tree)
    orders, runs = read_orders_and_runs(r, doc, items, assets.tree)
    if r.problems or reason_tree is None:
        raise PlantFileError(source, r.problems)
    return PlantModel(
        source=source,
        tree=assets.tree,
        bindings=assets.bindings,
        state_maps=assets.state_maps,
        counter_max={a: m for a, m in assets.counter_max.items() if a in assets.state_maps},
        reasons=reason_tree,
        modes=modes,
        items=items,
        rates=IdealRates(rate_list),
        rate_list=rate_list,
        calendars=calendars,
        orders=orders,
        runs=runs,
    )
