"""The sections of the plant file, each read into domain objects (``andon.server.plant_file``).

Each entry of a section is checked in its own ``Reader.collect`` block, so one mistake does not
hide the next. What refers to a broken entry is not reported again where that can be told
apart (a broken state map, the reason tree); the model is discarded whenever any problem was
found, so the stand-ins used to carry on never reach the server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from typing import Any

from andon.domain import (
    CHANGEOVER,
    IDLE,
    MAINTENANCE,
    PRODUCTION,
    Asset,
    AssetKind,
    AssetPath,
    AssetTree,
    BreakPattern,
    IdealRate,
    Item,
    Mode,
    OrderState,
    ProductionOrder,
    Reason,
    ReasonTree,
    Run,
    RunBook,
    ShiftCalendar,
    ShiftPattern,
    StateDefinition,
    StateMap,
)
from andon.server._plant_reader import (
    Reader,
    hhmm,
    instant_ms,
    known_asset,
    state_type,
    weekdays,
)

__all__ = [
    "BUILTIN_MODES",
    "COUNTERS",
    "AssetSection",
    "Binding",
    "read_assets",
    "read_calendars",
    "read_items_and_rates",
    "read_modes",
    "read_orders_and_runs",
    "read_reasons",
    "read_state_maps",
]

#: The counters a cell may bind; any two of them give the third.
COUNTERS = ("infeed", "outfeed", "waste")
BUILTIN_MODES = {m.name: m for m in (PRODUCTION, CHANGEOVER, MAINTENANCE, IDLE)}


@dataclass(frozen=True, slots=True)
class Binding:
    """Which role a tag plays for an asset: ``state``, ``mode`` or one of ``COUNTERS``."""

    asset: AssetPath
    role: str


@dataclass(slots=True)
class AssetSection:
    tree: AssetTree
    bindings: dict[str, Binding]  # tag path -> binding
    state_maps: dict[AssetPath, StateMap]
    counter_max: dict[AssetPath, int]


def read_reasons(r: Reader, doc: Mapping[str, Any]) -> ReasonTree | None:
    """The reason tree; None when it is broken (reported once; references go unchecked)."""
    reasons = []
    for t in r.tables(doc, "reason"):
        with r.collect():
            r.check_keys(t, {"id", "name", "parent"})
            reasons.append(
                Reason(r.get(t, "id", str), r.get(t, "name", str), r.get(t, "parent", str, None))
            )
    with r.collect(), r.at("reason"):
        return ReasonTree(reasons)
    return None  # the problem was recorded by collect


def read_modes(r: Reader, doc: Mapping[str, Any]) -> dict[str, Mode]:
    modes = dict(BUILTIN_MODES)
    for t in r.tables(doc, "mode"):
        with r.collect():
            r.check_keys(t, {"name", "accounts_as", "startup"})
            name = r.get(t, "name", str)
            accounts_as = r.get(t, "accounts_as", str, None)
            with r.at("accounts_as"):
                accounts = None if accounts_as is None else state_type(r, accounts_as)
            modes[name] = Mode(name, accounts, r.get(t, "startup", bool, False))
    return modes


def _check_reason(r: Reader, reasons: ReasonTree | None, key: str, reason: str | None) -> None:
    if reason is not None and reasons is not None and reason not in reasons:
        with r.at(key):
            raise r.error(f"unknown reason {reason!r}")


def _state_map(r: Reader, t: Any, reasons: ReasonTree | None) -> StateMap | None:
    """One state map; None when one of its states is wrong (each such state is reported)."""
    if not isinstance(t, dict):
        raise r.error("must be a table")
    r.check_keys(t, {"unknown_reason", "state"})
    before = len(r.problems)
    definitions = []
    for s in r.tables(t, "state"):
        with r.collect():
            r.check_keys(s, {"code", "name", "type", "reason"})
            with r.at("type"):
                kind = state_type(r, r.get(s, "type", str))
            reason = r.get(s, "reason", str, None)
            _check_reason(r, reasons, "reason", reason)
            code, name = r.get(s, "code", int), r.get(s, "name", str)
            definitions.append(StateDefinition(code, name, kind, reason))
    unknown_reason = r.get(t, "unknown_reason", str, None)
    _check_reason(r, reasons, "unknown_reason", unknown_reason)
    if len(r.problems) > before:
        return None
    return StateMap(definitions, unknown_reason)


def read_state_maps(
    r: Reader, doc: Mapping[str, Any], reasons: ReasonTree | None
) -> tuple[dict[str, StateMap], set[str]]:
    """The state maps by name, and the names of the broken ones (already reported)."""
    found: dict[str, StateMap] = {}
    broken: set[str] = set()
    raw_maps: dict[str, Any] = {}
    with r.collect():
        raw_maps = r.get(doc, "state_map", dict, {})
    for map_name, t in raw_maps.items():
        broken.add(map_name)
        with r.collect(), r.at(f"state_map.{map_name}"):
            state_map = _state_map(r, t, reasons)
            if state_map is not None:
                found[map_name] = state_map
                broken.discard(map_name)
    return found, broken


def _asset(
    r: Reader, t: Mapping[str, Any], into: AssetSection, maps: dict[str, StateMap], broken: set[str]
) -> None:
    path = r.convert(t, "path", AssetPath.parse)
    parent = path.parent
    if parent is not None and parent in r.broken_assets:
        r.broken_assets.add(path)  # its parent's problem is reported: not "cannot add" too
        r.skip()
    try:
        _asset_entry(r, t, path, into, maps, broken)
    except BaseException:
        if path not in into.tree:  # not added: what names it would only repeat the problem
            r.broken_assets.add(path)
        raise


def _asset_entry(
    r: Reader,
    t: Mapping[str, Any],
    path: AssetPath,
    into: AssetSection,
    maps: dict[str, StateMap],
    broken: set[str],
) -> None:
    r.check_keys(t, {"path", "kind", "name", "timezone", "state_map", "tags", "counter_max"})
    with r.at("kind"):
        kind_text = r.get(t, "kind", str)
        try:
            kind = AssetKind(kind_text)
        except ValueError:
            raise r.error(f"{kind_text!r} is not one of {[k.value for k in AssetKind]}") from None
    with r.at("path"):
        into.tree.add(Asset(path, kind, r.get(t, "name", str, ""), r.get(t, "timezone", str, None)))
    tags = r.get(t, "tags", dict, {})
    with r.at("tags"):
        r.check_keys(tags, {"state", "mode", *COUNTERS})
        for role, tag in tags.items():
            with r.at(role):
                if not isinstance(tag, str) or not tag:
                    raise r.error("must be a tag path <group>/<node>/<device>/<metric>")
                if tag in into.bindings:
                    bound = into.bindings[tag].asset
                    raise r.error(f"tag {tag!r} is already bound to {bound}")
                into.bindings[tag] = Binding(path, role)
    if "state" in tags:
        map_name = r.get(t, "state_map", str)
        if map_name in broken:
            return  # reported where the map is
        if map_name not in maps:
            with r.at("state_map"):
                raise r.error(f"unknown state map {map_name!r}")
        into.state_maps[path] = maps[map_name]
        with r.at("path"):
            into.tree.site_of(path)  # intervals need a timezone: the asset must be in a site
    elif tags:
        raise r.error("an asset with mode or counter tags needs a state tag")
    maximum = r.get(t, "counter_max", int, 2**32 - 1)
    if maximum <= 0:
        with r.at("counter_max"):
            raise r.error("must be positive")
    into.counter_max[path] = maximum


def read_assets(
    r: Reader, doc: Mapping[str, Any], maps: dict[str, StateMap], broken_maps: set[str]
) -> AssetSection:
    section = AssetSection(AssetTree(), {}, {}, {})
    for t in r.tables(doc, "asset"):
        with r.collect():
            _asset(r, t, section, maps, broken_maps)
    return section


def _check_item(r: Reader, items: dict[str, Item], item_id: str) -> None:
    if item_id in r.broken_items:
        r.skip()
    if item_id not in items:
        with r.at("item"):
            raise r.error(f"unknown item {item_id!r}")


def read_items_and_rates(
    r: Reader, doc: Mapping[str, Any], tree: AssetTree
) -> tuple[dict[str, Item], list[IdealRate]]:
    items: dict[str, Item] = {}
    for t in r.tables(doc, "item"):
        with r.entry(t, r.broken_items):
            r.check_keys(t, {"id", "name"})
            item = Item(r.get(t, "id", str), r.get(t, "name", str, ""))
            if item.id in items:
                with r.at("id"):
                    raise r.error(f"item {item.id!r} is declared twice")
            items[item.id] = item
    rate_list: list[IdealRate] = []
    for t in r.tables(doc, "rate"):
        with r.collect():
            r.check_keys(t, {"item", "asset", "units_per_minute", "cycle_seconds"})
            item_id = r.get(t, "item", str)
            _check_item(r, items, item_id)
            asset = known_asset(r, t, "asset", tree)
            with r.at("units_per_minute"):
                if "units_per_minute" in t:
                    per_minute = Fraction(str(r.get(t, "units_per_minute", float)))
                    rate = IdealRate.per_minute(item_id, asset, per_minute)
                elif "cycle_seconds" in t:
                    seconds = Fraction(str(r.get(t, "cycle_seconds", float)))
                    rate = IdealRate.cycle_seconds(item_id, asset, seconds)
                else:
                    raise r.error("give units_per_minute or cycle_seconds")
            rate_list.append(rate)
    return items, rate_list


def _shift(r: Reader, s: Mapping[str, Any]) -> ShiftPattern:
    r.check_keys(s, {"name", "weekdays", "start", "end", "breaks"})
    breaks = []
    for b in r.tables(s, "breaks"):
        r.check_keys(b, {"start", "end", "name"})
        start, end = r.convert(b, "start", hhmm), r.convert(b, "end", hhmm)
        breaks.append(BreakPattern(start, end, r.get(b, "name", str, "Break")))
    name, days = r.get(s, "name", str), weekdays(r, s)
    begins, ends = r.convert(s, "start", hhmm), r.convert(s, "end", hhmm)
    with r.at("breaks"):
        return ShiftPattern(name, days, begins, ends, tuple(breaks))


def _calendar(
    r: Reader, t: Mapping[str, Any], tree: AssetTree
) -> tuple[AssetPath, ShiftCalendar] | None:
    """A site's calendar; None when one of its shifts is wrong (each such shift is reported)."""
    r.check_keys(t, {"site", "shift", "holidays"})
    site_path = known_asset(r, t, "site", tree)
    site = tree.get(site_path)
    if site.kind is not AssetKind.SITE or site.timezone is None:
        with r.at("site"):
            raise r.error(f"{site_path} is not a site")
    before = len(r.problems)
    patterns = []
    for s in r.tables(t, "shift"):
        with r.collect():
            patterns.append(_shift(r, s))
    holidays = r.get(t, "holidays", list, [])
    with r.at("holidays"):
        off = frozenset(date.fromisoformat(str(d)) for d in holidays)
        if len(r.problems) > before:
            return None
        return site_path, ShiftCalendar(site.timezone, tuple(patterns), off)


def read_calendars(
    r: Reader, doc: Mapping[str, Any], tree: AssetTree
) -> dict[AssetPath, ShiftCalendar]:
    calendars: dict[AssetPath, ShiftCalendar] = {}
    for t in r.tables(doc, "calendar"):
        with r.collect():
            found = _calendar(r, t, tree)
            if found is None:
                continue
            site_path, calendar = found
            if site_path in calendars:
                with r.at("site"):
                    raise r.error(f"{site_path} has two calendars")
            calendars[site_path] = calendar
    return calendars


def _order(r: Reader, t: Mapping[str, Any], items: dict[str, Item]) -> ProductionOrder:
    r.check_keys(t, {"id", "item", "quantity", "state"})
    item_id = r.get(t, "item", str)
    _check_item(r, items, item_id)
    with r.at("state"):
        state_text = r.get(t, "state", str, "released")
        try:
            state = OrderState(state_text)
        except ValueError:
            names = [s.value for s in OrderState]
            raise r.error(f"{state_text!r} is not one of {names}") from None
    order_id, quantity = r.get(t, "id", str), r.get(t, "quantity", int)
    with r.at("quantity"):
        return ProductionOrder(order_id, item_id, quantity, state)


def read_orders_and_runs(
    r: Reader, doc: Mapping[str, Any], items: dict[str, Item], tree: AssetTree
) -> tuple[dict[str, ProductionOrder], list[Run]]:
    orders: dict[str, ProductionOrder] = {}
    for t in r.tables(doc, "order"):
        with r.entry(t, r.broken_orders):
            order = _order(r, t, items)
            orders[order.id] = order
    runs: list[Run] = []
    books: dict[AssetPath, RunBook] = {}
    for t in r.tables(doc, "run"):
        with r.collect():
            r.check_keys(t, {"id", "order", "asset", "start", "end"})
            order_id = r.get(t, "order", str)
            if order_id in r.broken_orders:
                r.skip()
            if order_id not in orders:
                with r.at("order"):
                    raise r.error(f"unknown order {order_id!r}")
            asset = known_asset(r, t, "asset", tree)
            end = r.convert(t, "end", instant_ms) if "end" in t else None
            start_ms = r.convert(t, "start", instant_ms)
            with r.at("start"):
                run = Run(r.get(t, "id", str), order_id, asset, start_ms, end)
                books.setdefault(asset, RunBook(asset)).add(run)
            runs.append(run)
    return orders, runs
