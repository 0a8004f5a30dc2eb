"""Reading the plant file's TOML document field by field (``andon.server.plant_file``).

``_Reader`` keeps the path of the field being read (``asset[3].tags.state``) so that every error
names it, and collects the problems of independent entries instead of stopping at the first:
an engineer fixing a file sees every mistake in one check. A problem becomes a
``PlantProblem``; ``PlantFileError`` carries all of them (the line is added where the TOML
text is known, ``andon.server.plant_lines``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time
from typing import Any, NoReturn, TypeVar

from andon.domain import AssetPath, AssetTree, DomainError, StateType

__all__ = [
    "WEEKDAYS",
    "PlantFileError",
    "PlantProblem",
    "Reader",
    "hhmm",
    "instant_ms",
    "known_asset",
    "state_type",
    "weekdays",
]

WEEKDAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
T = TypeVar("T")
#: What a rule of ``andon.domain`` or a parser raises for a value it cannot use.
_VALUE_ERRORS = (DomainError, ValueError, ArithmeticError)


@dataclass(frozen=True, slots=True)
class PlantProblem:
    """One mistake: the field (``asset[3].tags.state``; empty for the file as a whole), what is
    wrong, and the line of the TOML text where the field is (None: not known)."""

    field: str
    message: str
    line: int | None = None

    def describe(self) -> str:
        if not self.field:
            return self.message
        where = self.field if self.line is None else f"{self.field} (line {self.line})"
        return f"{where}: {self.message}"


class PlantFileError(ValueError):
    """A plant file that cannot be used; each line of the message names the file and a field."""

    def __init__(self, source: str, problems: Sequence[PlantProblem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__("\n".join(f"{source}: {p.describe()}" for p in self.problems))

    def with_lines(self, locate: Callable[[str], int | None]) -> PlantFileError:
        """The same problems, each with the line ``locate`` finds for its field."""
        found = [
            p if p.line or not p.field else replace(p, line=locate(p.field)) for p in self.problems
        ]
        return PlantFileError(self.source, found)


class _AlreadyReported(Exception):
    """Raised for an entry that names a broken one: its problem is already recorded."""


class Reader:
    def __init__(self, source: str) -> None:
        self.source = source
        self.where: list[str] = []
        self.problems: list[PlantProblem] = []
        #: Entries with a problem (assets not added, item and order ids): what names them is
        #: not reported again.
        self.broken_assets: set[AssetPath] = set()
        self.broken_items: set[str] = set()
        self.broken_orders: set[str] = set()

    @contextmanager
    def entry(self, table: Mapping[str, Any], broken: set[str]) -> Iterator[None]:
        """``collect`` for an entry with an ``id``: a problem also marks the id as broken."""
        with self.collect():
            try:
                yield
            except BaseException:
                if isinstance(table.get("id"), str):
                    broken.add(table["id"])
                raise

    def skip(self) -> NoReturn:
        """Leave the entry without a problem of its own (it names one already reported)."""
        raise _AlreadyReported

    @contextmanager
    def at(self, name: str) -> Iterator[None]:
        self.where.append(name)
        try:
            yield
        except PlantFileError:
            raise
        except _VALUE_ERRORS as exc:
            raise self.error(str(exc)) from None
        finally:
            self.where.pop()

    @contextmanager
    def collect(self) -> Iterator[None]:
        """Record a problem of the block and carry on with the next entry."""
        try:
            yield
        except _AlreadyReported:
            pass
        except PlantFileError as exc:
            self.problems.extend(exc.problems)
        except _VALUE_ERRORS as exc:
            self.problems.extend(self.error(str(exc)).problems)

    def error(self, message: str) -> PlantFileError:
        where = ".".join(self.where).replace(".[", "[")
        return PlantFileError(self.source, [PlantProblem(where or "(top)", message)])

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
        """The tables of an array; a non-table entry is recorded as a problem and skipped."""
        items: list[Any] = []
        with self.collect():
            items = self.get(doc, key, list, [])
        for index, table in enumerate(items):
            with self.at(f"{key}[{index}]"):
                if not isinstance(table, dict):
                    self.problems.extend(self.error("must be a table").problems)
                    continue
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


def hhmm(text: str) -> time:
    return time.fromisoformat(text)


def instant_ms(text: str) -> int:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} needs a UTC offset (e.g. 2026-01-01T00:00:00Z)")
    return int(moment.astimezone(UTC).timestamp() * 1000)


def weekdays(r: Reader, table: Mapping[str, Any]) -> frozenset[int]:
    raw = r.get(table, "weekdays", list, ["mon", "tue", "wed", "thu", "fri", "sat", "sun"])
    with r.at("weekdays"):
        days = set()
        for day in raw:
            if not isinstance(day, str) or day.lower()[:3] not in WEEKDAYS:
                raise r.error(f"{day!r} is not a weekday (mon..sun)")
            days.add(WEEKDAYS[day.lower()[:3]])
        return frozenset(days)


def state_type(r: Reader, text: str) -> StateType:
    try:
        return StateType(text)
    except ValueError:
        raise r.error(f"{text!r} is not one of {[s.value for s in StateType]}") from None


def known_asset(r: Reader, table: Mapping[str, Any], key: str, tree: AssetTree) -> AssetPath:
    path = r.convert(table, key, AssetPath.parse)
    if path in r.broken_assets:
        r.skip()
    if path not in tree:
        with r.at(key):
            raise r.error(f"unknown asset {path}")
    return path
