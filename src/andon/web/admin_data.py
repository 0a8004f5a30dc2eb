"""The plant configuration as the admin page shows it: the model the server is running (loaded
from the plant file at start-up): assets, tag bindings, state maps, reasons, modes, items and
rates, shift calendars, orders.

The tables show what runs, not the file on disk: the plant file is the source of truth (every
node of a cluster shares it) and is edited as a whole (``andon.web.admin_plant``); a saved file
takes effect at the next start, and until then the page says that the two differ.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from andon.server.mes_queries import MesQueries
from andon.server.plant_file import PlantModel

__all__ = ["PlantView", "plant_view"]

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(slots=True)
class PlantView:
    source: str
    assets: list[dict[str, Any]] = field(default_factory=list)
    bindings: list[dict[str, Any]] = field(default_factory=list)
    state_maps: list[dict[str, Any]] = field(default_factory=list)
    reasons: list[dict[str, Any]] = field(default_factory=list)
    modes: list[dict[str, Any]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    rates: list[dict[str, Any]] = field(default_factory=list)
    calendars: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)


def _state_maps(plant: PlantModel) -> list[dict[str, Any]]:
    """Assets sharing one state map are shown together (the plant file names maps, the model
    keeps them per asset)."""
    groups: dict[int, list[str]] = defaultdict(list)
    maps = {}
    for asset, state_map in sorted(plant.state_maps.items()):
        groups[id(state_map)].append(str(asset))
        maps[id(state_map)] = state_map
    found = []
    for key, assets in groups.items():
        definitions = sorted(maps[key].definitions.values(), key=lambda d: d.code)
        states = [
            {"code": d.code, "name": d.name, "type": d.type.value, "reason": d.default_reason or ""}
            for d in definitions
        ]
        found.append({"assets": assets, "states": states})
    return found


def _reasons(plant: PlantModel) -> list[dict[str, Any]]:
    tree = plant.reasons
    rows: list[dict[str, Any]] = []

    def walk(reason_id: str, depth: int) -> None:
        reason = tree.get(reason_id)
        rows.append({"id": reason.id, "name": reason.name, "depth": depth})
        for child in tree.children(reason_id):
            walk(child.id, depth + 1)

    for category in tree.categories():
        walk(category.id, 0)
    return rows


def _calendars(plant: PlantModel) -> list[dict[str, Any]]:
    found = []
    for site, calendar in plant.calendars.items():
        found.append(
            {
                "site": str(site),
                "timezone": calendar.timezone,
                "holidays": sorted(d.isoformat() for d in calendar.holidays),
                "shifts": [
                    {
                        "name": p.name,
                        "days": " ".join(_WEEKDAYS[d] for d in sorted(p.weekdays)),
                        "start": p.start.isoformat("minutes"),
                        "end": p.end.isoformat("minutes"),
                        "breaks": ", ".join(
                            f"{b.name} {b.start.isoformat('minutes')}-{b.end.isoformat('minutes')}"
                            for b in p.breaks
                        ),
                    }
                    for p in calendar.patterns
                ],
            }
        )
    return found


def plant_view(mes: MesQueries) -> PlantView:
    plant = mes.service.plant
    view = PlantView(plant.source)
    view.assets = [
        {"path": str(a.path), "kind": a.kind.value, "name": a.name, "timezone": a.timezone or "",
         "counter_max": plant.counter_max.get(a.path, "")}
        for a in plant.tree
    ]  # fmt: skip
    view.bindings = [
        {"tag": tag, "asset": str(b.asset), "role": b.role}
        for tag, b in sorted(plant.bindings.items(), key=lambda kv: (str(kv[1].asset), kv[1].role))
    ]
    view.state_maps = _state_maps(plant)
    view.reasons = _reasons(plant)
    view.modes = [
        {"name": m.name, "accounts_as": m.accounts_as.value if m.accounts_as else "",
         "startup": m.startup}
        for m in plant.modes.values()
    ]  # fmt: skip
    view.items = [{"id": i.id, "name": i.name} for i in plant.items.values()]
    view.rates = [
        {"item": r.item_id, "asset": str(r.asset),
         "per_minute": f"{float(r.units_per_minute):g}",
         "cycle_s": f"{float(r.cycle_time_ms) / 1000:g}"}
        for r in plant.rate_list
    ]  # fmt: skip
    view.calendars = _calendars(plant)
    view.orders = [
        {"id": o.id, "item": o.item_id, "quantity": o.quantity, "state": o.state.value}
        for o in mes.service.run_repository.orders()
    ]
    return view
