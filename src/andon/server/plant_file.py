"""The plant file (TOML): assets, tag bindings, state maps, reasons, modes, items, rates, shift
calendars, orders and runs, checked into domain objects.

Every error names the file and the field (``plant.toml: asset[3].tags.state: ...``) and the
whole file is rejected: a server never starts on half a plant. The format is shown by
``examples/plant.toml``; the rules live in ``andon.domain`` (this module only translates).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

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
    DomainError,
    IdealRate,
    IdealRates,
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
    StateType,
)

__all__ = ["BUILTIN_MODES", "COUNTERS", "Binding", "PlantFileError", "PlantModel", "load_plant"]

#: The counters a cell may bind; any two of them give the third.
COUNTERS = ("infeed", "outfeed", "waste")
BUILTIN_MODES = {m.name: m for m in (PRODUCTION, CHANGEOVER, MAINTENANCE, IDLE)}
_WEEKDAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
T = TypeVar("T")


class PlantFileError(ValueError):
    """A plant file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class Binding:
    """Which role a tag plays for an asset: ``state``, ``mode`` or one of ``COUNTERS``."""

    asset: AssetPath
    role: str


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


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source
        self.where: list[str] = []

    @contextmanager
    def at(self, name: str) -> Iterator[None]:
        self.where.append(name)
        try:
            yield
        except DomainError as exc:
            raise self.error(str(exc)) from None
        finally:
            self.where.pop()

    def error(self, message: str) -> PlantFileError:
        where = ".".join(self.where).replace(".[", "[")
        return PlantFileError(f"{self.source}: {where or '(top)'}: {message}")

    def get(self, table: Mapping[str, Any], key: str, kind: type[T], default: Any = ...) -> T:
        if key not in table:
            if default is ...:
                with self.at(key):
                    raise self.error("is required")
            return default  # type: ignore[no-any-return]
        value = table[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            with self.at(key):
                raise self.error(f"must be a {kind.__name__}, got {value!r}")
        return value  # type: ignore[no-any-return]

    def tables(self, doc: Mapping[str, Any], key: str) -> Iterator[Mapping[str, Any]]:
        items = self.get(doc, key, list, [])
        for index, table in enumerate(items):
            with self.at(f"{key}[{index}]"):
                if not isinstance(table, dict):
                    raise self.error("must be a table")
                yield table

    def check_keys(self, table: Mapping[str, Any], allowed: set[str]) -> None:
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise self.error(f"unknown key(s) {unknown}; allowed: {sorted(allowed)}")

    def convert(self, table: Mapping[str, Any], key: str, parse: Callable[[str], T]) -> T:
        text = self.get(table, key, str)
        with self.at(key):
            try:
                return parse(text)
            except ValueError as exc:
                raise self.error(str(exc)) from None


def _hhmm(text: str) -> time:
    return time.fromisoformat(text)


def _instant_ms(text: str) -> int:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} needs a UTC offset (e.g. 2026-01-01T00:00:00Z)")
    return int(moment.astimezone(UTC).timestamp() * 1000)


def _weekdays(r: _Reader, table: Mapping[str, Any]) -> frozenset[int]:
    raw = r.get(table, "weekdays", list, ["mon", "tue", "wed", "thu", "fri", "sat", "sun"])
    with r.at("weekdays"):
        days = set()
        for day in raw:
            if not isinstance(day, str) or day.lower()[:3] not in _WEEKDAYS:
                raise r.error(f"{day!r} is not a weekday (mon..sun)")
            days.add(_WEEKDAYS[day.lower()[:3]])
        return frozenset(days)


def load_plant(path: Path) -> PlantModel:
    """Read and check a plant file; raises ``PlantFileError`` naming the file and the field."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PlantFileError(f"{path}: cannot read the plant file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PlantFileError(f"{path}: not valid TOML: {exc}") from None
    return parse_plant(doc, str(path))


def parse_plant(doc: Mapping[str, Any], source: str) -> PlantModel:  # noqa: PLR0915
    r = _Reader(source)
    r.check_keys(
        doc, {"asset", "state_map", "reason", "mode", "item", "rate", "calendar", "order", "run"}
    )
    reasons = []
    for t in r.tables(doc, "reason"):
        r.check_keys(t, {"id", "name", "parent"})
        reasons.append(
            Reason(r.get(t, "id", str), r.get(t, "name", str), r.get(t, "parent", str, None))
        )
    with r.at("reason"):
        reason_tree = ReasonTree(reasons)

    modes = dict(BUILTIN_MODES)
    for t in r.tables(doc, "mode"):
        r.check_keys(t, {"name", "accounts_as", "startup"})
        name = r.get(t, "name", str)
        accounts_as = r.get(t, "accounts_as", str, None)
        with r.at("accounts_as"):
            state_type = None if accounts_as is None else _state_type(r, accounts_as)
        modes[name] = Mode(name, state_type, r.get(t, "startup", bool, False))

    state_maps_by_name: dict[str, StateMap] = {}
    raw_maps = r.get(doc, "state_map", dict, {})
    for map_name, t in raw_maps.items():
        with r.at(f"state_map.{map_name}"):
            if not isinstance(t, dict):
                raise r.error("must be a table")
            r.check_keys(t, {"unknown_reason", "state"})
            definitions = []
            for s in r.tables(t, "state"):
                r.check_keys(s, {"code", "name", "type", "reason"})
                with r.at("type"):
                    state_type = _state_type(r, r.get(s, "type", str))
                reason = r.get(s, "reason", str, None)
                if reason is not None and reason not in reason_tree:
                    with r.at("reason"):
                        raise r.error(f"unknown reason {reason!r}")
                code, name = r.get(s, "code", int), r.get(s, "name", str)
                definitions.append(StateDefinition(code, name, state_type, reason))
            unknown_reason = r.get(t, "unknown_reason", str, None)
            if unknown_reason is not None and unknown_reason not in reason_tree:
                with r.at("unknown_reason"):
                    raise r.error(f"unknown reason {unknown_reason!r}")
            state_maps_by_name[map_name] = StateMap(definitions, unknown_reason)

    tree = AssetTree()
    bindings: dict[str, Binding] = {}
    state_maps: dict[AssetPath, StateMap] = {}
    counter_max: dict[AssetPath, int] = {}
    for t in r.tables(doc, "asset"):
        r.check_keys(t, {"path", "kind", "name", "timezone", "state_map", "tags", "counter_max"})
        path = r.convert(t, "path", AssetPath.parse)
        with r.at("kind"):
            kind_text = r.get(t, "kind", str)
            try:
                kind = AssetKind(kind_text)
            except ValueError:
                names = [k.value for k in AssetKind]
                raise r.error(f"{kind_text!r} is not one of {names}") from None
        with r.at("path"):
            tree.add(Asset(path, kind, r.get(t, "name", str, ""), r.get(t, "timezone", str, None)))
        tags = r.get(t, "tags", dict, {})
        with r.at("tags"):
            r.check_keys(tags, {"state", "mode", *COUNTERS})
            for role, tag in tags.items():
                with r.at(role):
                    if not isinstance(tag, str) or not tag:
                        raise r.error("must be a tag path <group>/<node>/<device>/<metric>")
                    if tag in bindings:
                        raise r.error(f"tag {tag!r} is already bound to {bindings[tag].asset}")
                    bindings[tag] = Binding(path, role)
        if "state" in tags:
            map_name = r.get(t, "state_map", str)
            if map_name not in state_maps_by_name:
                with r.at("state_map"):
                    raise r.error(f"unknown state map {map_name!r}")
            state_maps[path] = state_maps_by_name[map_name]
            with r.at("path"):
                tree.site_of(path)  # intervals need a timezone: the asset must be in a site
        elif tags:
            raise r.error("an asset with mode or counter tags needs a state tag")
        maximum = r.get(t, "counter_max", int, 2**32 - 1)
        if maximum <= 0:
            with r.at("counter_max"):
                raise r.error("must be positive")
        counter_max[path] = maximum

    items: dict[str, Item] = {}
    for t in r.tables(doc, "item"):
        r.check_keys(t, {"id", "name"})
        item = Item(r.get(t, "id", str), r.get(t, "name", str, ""))
        if item.id in items:
            with r.at("id"):
                raise r.error(f"item {item.id!r} is declared twice")
        items[item.id] = item

    rate_list: list[IdealRate] = []
    for t in r.tables(doc, "rate"):
        r.check_keys(t, {"item", "asset", "units_per_minute", "cycle_seconds"})
        item_id = r.get(t, "item", str)
        if item_id not in items:
            with r.at("item"):
                raise r.error(f"unknown item {item_id!r}")
        asset = _known_asset(r, t, "asset", tree)
        with r.at("units_per_minute"):
            if "units_per_minute" in t:
                rate = IdealRate.per_minute(
                    item_id, asset, Fraction(str(r.get(t, "units_per_minute", float)))
                )
            elif "cycle_seconds" in t:
                seconds = Fraction(str(r.get(t, "cycle_seconds", float)))
                rate = IdealRate.cycle_seconds(item_id, asset, seconds)
            else:
                raise r.error("give units_per_minute or cycle_seconds")
        rate_list.append(rate)

    calendars: dict[AssetPath, ShiftCalendar] = {}
    for t in r.tables(doc, "calendar"):
        r.check_keys(t, {"site", "shift", "holidays"})
        site_path = _known_asset(r, t, "site", tree)
        site = tree.get(site_path)
        if site.kind is not AssetKind.SITE or site.timezone is None:
            with r.at("site"):
                raise r.error(f"{site_path} is not a site")
        patterns = []
        for s in r.tables(t, "shift"):
            r.check_keys(s, {"name", "weekdays", "start", "end", "breaks"})
            breaks = []
            for b in r.tables(s, "breaks"):
                r.check_keys(b, {"start", "end", "name"})
                breaks.append(
                    BreakPattern(
                        r.convert(b, "start", _hhmm),
                        r.convert(b, "end", _hhmm),
                        r.get(b, "name", str, "Break"),
                    )
                )
            name, weekdays = r.get(s, "name", str), _weekdays(r, s)
            begins, ends = r.convert(s, "start", _hhmm), r.convert(s, "end", _hhmm)
            with r.at("breaks"):
                patterns.append(ShiftPattern(name, weekdays, begins, ends, tuple(breaks)))
        holidays = r.get(t, "holidays", list, [])
        with r.at("holidays"):
            try:
                days = frozenset(date.fromisoformat(str(d)) for d in holidays)
            except ValueError as exc:
                raise r.error(str(exc)) from None
            calendar = ShiftCalendar(site.timezone, tuple(patterns), days)
        if site_path in calendars:
            with r.at("site"):
                raise r.error(f"{site_path} has two calendars")
        calendars[site_path] = calendar

    orders: dict[str, ProductionOrder] = {}
    for t in r.tables(doc, "order"):
        r.check_keys(t, {"id", "item", "quantity", "state"})
        item_id = r.get(t, "item", str)
        if item_id not in items:
            with r.at("item"):
                raise r.error(f"unknown item {item_id!r}")
        with r.at("state"):
            state_text = r.get(t, "state", str, "released")
            try:
                state = OrderState(state_text)
            except ValueError:
                names = [s.value for s in OrderState]
                raise r.error(f"{state_text!r} is not one of {names}") from None
            order = ProductionOrder(r.get(t, "id", str), item_id, r.get(t, "quantity", int), state)
        orders[order.id] = order

    runs: list[Run] = []
    books: dict[AssetPath, RunBook] = {}
    for t in r.tables(doc, "run"):
        r.check_keys(t, {"id", "order", "asset", "start", "end"})
        order_id = r.get(t, "order", str)
        if order_id not in orders:
            with r.at("order"):
                raise r.error(f"unknown order {order_id!r}")
        asset = _known_asset(r, t, "asset", tree)
        end = r.convert(t, "end", _instant_ms) if "end" in t else None
        start_ms = r.convert(t, "start", _instant_ms)
        with r.at("start"):
            run = Run(r.get(t, "id", str), order_id, asset, start_ms, end)
            books.setdefault(asset, RunBook(asset)).add(run)
        runs.append(run)

    return PlantModel(
        source=source,
        tree=tree,
        bindings=bindings,
        state_maps=state_maps,
        counter_max={a: m for a, m in counter_max.items() if a in state_maps},
        reasons=reason_tree,
        modes=modes,
        items=items,
        rates=IdealRates(rate_list),
        rate_list=rate_list,
        calendars=calendars,
        orders=orders,
        runs=runs,
    )


def _state_type(r: _Reader, text: str) -> StateType:
    try:
        return StateType(text)
    except ValueError:
        raise r.error(f"{text!r} is not one of {[s.value for s in StateType]}") from None


def _known_asset(r: _Reader, table: Mapping[str, Any], key: str, tree: AssetTree) -> AssetPath:
    path = r.convert(table, key, AssetPath.parse)
    if path not in tree:
        with r.at(key):
            raise r.error(f"unknown asset {path}")
    return path
