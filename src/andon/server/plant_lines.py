"""Where a field of a TOML text is: ``asset[3].tags.state`` -> the line number (1-based).

``tomllib`` returns plain dicts without positions, so the plant file's errors name fields, not
lines; an engineer editing the file needs the line. This scanner walks the text once and notes
the line of every table header, key and array element, resolving ``[[array]]`` headers to
their index and ``[a.b]`` headers under the array's last element, as TOML does. It is
forgiving: a field it cannot place gets the line of its nearest placed parent, or None.
Pure text work, no IO.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["field_line", "parse_field", "scan_lines"]

FieldPath = tuple[str | int, ...]
_BARE = re.compile(r"[A-Za-z0-9_-]+")
_FIELD_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_field(field: str) -> FieldPath:
    """``calendar[0].shift[1].start`` -> ("calendar", 0, "shift", 1, "start")."""
    return tuple(int(index) if index else name for name, index in _FIELD_PART.findall(field))


def _split_key(text: str) -> list[str] | None:
    """A dotted TOML key (bare or quoted parts) -> its parts; None if it is not one."""
    parts: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            return None
        if text[i] in "\"'":
            quote = text[i]
            end = text.find(quote, i + 1)
            while quote == '"' and end > 0 and _escaped(text, end):
                end = text.find(quote, end + 1)
            if end < 0:
                return None
            parts.append(text[i + 1 : end])
            i = end + 1
        else:
            match = _BARE.match(text, i)
            if match is None:
                return None
            parts.append(match.group())
            i = match.end()
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            return parts
        if text[i] != ".":
            return None
        i += 1


def _key_end(line: str) -> int:
    """The index of the ``=`` of a key/value line (outside quotes), or -1."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            if char == quote and not (quote == '"' and _escaped(line, i)):
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "=":
            return i
        elif char == "#":
            return -1
    return -1


@dataclass(slots=True)
class _Open:
    """An array or inline table the value scanner is inside."""

    path: FieldPath
    array: bool
    count: int = 0


class _ValueScanner:
    """Follows a value across lines: strings (also multi-line), arrays and inline tables;
    notes the line where each array element and each inline table key starts."""

    def __init__(self, found: dict[FieldPath, int], base: FieldPath) -> None:
        self.found = found
        self.base = base
        self.stack: list[_Open] = []
        self.string = ""  # the delimiter of the string being read
        self.expect = False  # an array element may start next
        self.pending: FieldPath | None = None  # an inline table's key waiting for its value
        self.line = 0

    @property
    def done(self) -> bool:
        return not self.stack and not self.string

    def _skip_string(self, text: str, i: int) -> int:
        """Past the end of the open string, or len(text) if it goes on to the next line."""
        end = text.find(self.string, i)
        while end > 0 and self.string[0] == '"' and _escaped(text, end):
            end = text.find(self.string, end + 1)
        if end < 0:
            return len(text)
        self.string, i = "", end + len(self.string)
        return i

    def _key(self, text: str, i: int, top: _Open) -> int:
        """An inline table's ``key =``: noted, its value expected next."""
        equals = text.find("=", i)
        stops = [p for p in (text.find(",", i), text.find("}", i)) if p >= 0]
        if 0 <= equals < min(stops, default=len(text)):
            parts = _split_key(text[i:equals])
            if parts is not None:
                self.pending = (*top.path, *parts)
                self.found.setdefault(self.pending, self.line)
            return equals + 1
        return _scalar_end(text, i)

    def _value_path(self, top: _Open | None) -> FieldPath:
        if top is None:
            return self.base
        if not top.array:
            path, self.pending = self.pending or top.path, None
            return path
        if not self.expect:
            return top.path
        self.expect = False
        element = (*top.path, top.count)
        top.count += 1
        self.found.setdefault(element, self.line)
        return element

    def feed(self, text: str, line: int) -> None:
        self.line = line
        i, n = 0, len(text)
        while i < n:
            if self.string:
                i = self._skip_string(text, i)
                continue
            char = text[i]
            top = self.stack[-1] if self.stack else None
            if char == "#":
                return
            if char in " \t,":
                self.expect = self.expect or (char == "," and top is not None and top.array)
                i += 1
            elif char in "]}":
                if self.stack:
                    self.stack.pop()
                self.expect = False
                i += 1
            elif top is not None and not top.array and self.pending is None:
                i = self._key(text, i, top)
            else:
                here = self._value_path(top)
                if char in "\"'":
                    triple = text[i : i + 3]
                    self.string = triple if triple in ('"""', "'''") else char
                    i += len(self.string)
                elif char in "[{":
                    self.found.setdefault(here, line)
                    self.stack.append(_Open(here, array=char == "["))
                    self.expect = char == "["
                    i += 1
                else:
                    i = _scalar_end(text, i)


def _scalar_end(text: str, i: int) -> int:
    """Past a number, boolean or date (nothing to note in them); at least one character."""
    i += 1
    while i < len(text) and text[i] not in ",]}# \t":
        i += 1
    return i


def _escaped(text: str, i: int) -> bool:
    """Whether the character at ``i`` follows an odd number of backslashes."""
    slashes = 0
    while i - slashes - 1 >= 0 and text[i - slashes - 1] == "\\":
        slashes += 1
    return slashes % 2 == 1


def _resolve(parts: list[str], last: dict[FieldPath, int], *, new_element: bool) -> FieldPath:
    """A header's key as a path: arrays of tables on the way resolve to their last element;
    ``new_element`` (a ``[[...]]`` header) appends one to the array the key names."""
    path: FieldPath = ()
    for index, part in enumerate(parts):
        path = (*path, part)
        if index == len(parts) - 1 and new_element:
            count = last.get(path, -1) + 1
            last[path] = count
            return (*path, count)
        if path in last:
            path = (*path, last[path])
    return path


def scan_lines(text: str) -> dict[FieldPath, int]:
    """Every header, key and array element of the text -> the line it starts on."""
    found: dict[FieldPath, int] = {}
    last_element: dict[FieldPath, int] = {}
    table: FieldPath = ()
    value: _ValueScanner | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        if value is not None:
            value.feed(raw, number)
            if value.done:
                value = None
            continue
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            array = line.startswith("[[")
            close = line.find("]]" if array else "]")
            parts = _split_key(line[2 if array else 1 : close]) if close > 0 else None
            if parts is None:
                continue
            table = _resolve(parts, last_element, new_element=array)
            for depth in range(1, len(table) + 1):
                found.setdefault(table[:depth], number)
            continue
        equals = _key_end(raw)
        parts = _split_key(raw[:equals]) if equals > 0 else None
        if parts is None:
            continue
        key: FieldPath = (*table, *parts)
        found.setdefault(key, number)
        scanner = _ValueScanner(found, key)
        scanner.feed(raw[equals + 1 :], number)
        if not scanner.done:
            value = scanner
    return found


def field_line(text: str, field: str) -> int | None:
    """The line of ``field`` (``asset[3].tags.state``) in the TOML text, or of its nearest
    parent found there; None when neither is (e.g. ``(top)``)."""
    target = parse_field(field)
    found = scan_lines(text)
    for depth in range(len(target), 0, -1):
        line = found.get(target[:depth])
        if line is not None:
            return line
    return None
