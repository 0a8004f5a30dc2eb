"""The asset hierarchy (enterprise / site / area / line / cell, any depth) and asset groups.

Paths are the identity of an asset everywhere (intervals, counts, rollups, UNS topics), so their
segments must be usable as MQTT topic levels: no empty segment, no ``/`` (the separator) and no
``+`` or ``#`` (wildcards).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from andon.domain.errors import DomainError

__all__ = ["Asset", "AssetGroup", "AssetKind", "AssetPath", "AssetTree"]

_FORBIDDEN = frozenset("/+#")


@dataclass(frozen=True, slots=True, order=True)
class AssetPath:
    """An asset's place in the hierarchy, e.g. ``Acme/Plant1/Bottling/Line1/Filler1``."""

    segments: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.segments:
            raise DomainError("an asset path needs at least one segment")
        for segment in self.segments:
            if not segment or segment != segment.strip():
                raise DomainError(f"asset path {self.segments!r}: empty or padded segment")
            if _FORBIDDEN & set(segment):
                raise DomainError(f"asset path segment {segment!r} must not contain '/', '+', '#'")

    @classmethod
    def parse(cls, text: str) -> AssetPath:
        return cls(tuple(text.split("/")))

    def __str__(self) -> str:
        return "/".join(self.segments)

    @property
    def name(self) -> str:
        return self.segments[-1]

    @property
    def depth(self) -> int:
        return len(self.segments)

    @property
    def parent(self) -> AssetPath | None:
        return AssetPath(self.segments[:-1]) if len(self.segments) > 1 else None

    def child(self, segment: str) -> AssetPath:
        return AssetPath((*self.segments, segment))

    def is_ancestor_of(self, other: AssetPath) -> bool:
        """Strict ancestry: a path is not its own ancestor."""
        n = len(self.segments)
        return len(other.segments) > n and other.segments[:n] == self.segments


class AssetKind(enum.Enum):
    ENTERPRISE = "enterprise"
    SITE = "site"
    AREA = "area"
    LINE = "line"
    CELL = "cell"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Asset:
    """One node of the hierarchy. Only a site carries a timezone (IANA name), and it must."""

    path: AssetPath
    kind: AssetKind
    name: str = ""
    timezone: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.path.name)
        if self.kind is AssetKind.SITE:
            if not self.timezone:
                raise DomainError(f"site {self.path} needs a timezone (IANA name)")
            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise DomainError(f"site {self.path}: unknown timezone {self.timezone!r}") from exc
        elif self.timezone is not None:
            raise DomainError(f"{self.kind.value} {self.path}: only a site carries a timezone")

    @property
    def zone(self) -> ZoneInfo:
        if self.timezone is None:
            raise DomainError(f"{self.path} is not a site and has no timezone")
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class AssetGroup:
    """A named set of assets that reports together (e.g. "Bottlenecks"), across the hierarchy."""

    name: str
    members: frozenset[AssetPath] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise DomainError("an asset group needs a name")


class AssetTree:
    """All assets of a deployment; parents are added before their children."""

    def __init__(self, assets: Iterable[Asset] = ()) -> None:
        self._assets: dict[AssetPath, Asset] = {}
        self._children: dict[AssetPath, list[AssetPath]] = {}
        self._groups: dict[str, AssetGroup] = {}
        for asset in assets:
            self.add(asset)

    def add(self, asset: Asset) -> None:
        if asset.path in self._assets:
            raise DomainError(f"asset {asset.path} already exists")
        parent = asset.path.parent
        if parent is not None and parent not in self._assets:
            raise DomainError(f"cannot add {asset.path}: parent {parent} is unknown (add it first)")
        if asset.kind is AssetKind.SITE and self._site_above(asset.path) is not None:
            raise DomainError(f"site {asset.path} is inside another site")
        self._assets[asset.path] = asset
        self._children[asset.path] = []
        if parent is not None:
            self._children[parent].append(asset.path)

    def __contains__(self, path: object) -> bool:
        return path in self._assets

    def __len__(self) -> int:
        return len(self._assets)

    def __iter__(self) -> Iterator[Asset]:
        return iter(self._assets.values())

    def get(self, path: AssetPath) -> Asset:
        try:
            return self._assets[path]
        except KeyError:
            raise DomainError(f"unknown asset {path}") from None

    def parent(self, path: AssetPath) -> Asset | None:
        self.get(path)
        parent = path.parent
        return None if parent is None else self._assets[parent]

    def children(self, path: AssetPath) -> tuple[Asset, ...]:
        self.get(path)
        return tuple(self._assets[p] for p in self._children[path])

    def ancestors(self, path: AssetPath) -> tuple[Asset, ...]:
        """Nearest first (parent, grandparent, ..., root)."""
        self.get(path)
        found: list[Asset] = []
        current = path.parent
        while current is not None:
            found.append(self._assets[current])
            current = current.parent
        return tuple(found)

    def descendants(self, path: AssetPath) -> tuple[Asset, ...]:
        """Depth first, in insertion order, excluding ``path`` itself."""
        self.get(path)
        found: list[Asset] = []
        stack = list(reversed(self._children[path]))
        while stack:
            current = stack.pop()
            found.append(self._assets[current])
            stack.extend(reversed(self._children[current]))
        return tuple(found)

    def site_of(self, path: AssetPath) -> Asset:
        """The site an asset belongs to (itself if it is a site); its ``zone`` is the timezone."""
        asset = self.get(path)
        if asset.kind is AssetKind.SITE:
            return asset
        site = self._site_above(path)
        if site is None:
            raise DomainError(f"{path} is not inside a site, so it has no timezone")
        return site

    def _site_above(self, path: AssetPath) -> Asset | None:
        current = path.parent
        while current is not None:
            asset = self._assets.get(current)
            if asset is not None and asset.kind is AssetKind.SITE:
                return asset
            current = current.parent
        return None

    def add_group(self, group: AssetGroup) -> None:
        if group.name in self._groups:
            raise DomainError(f"asset group {group.name!r} already exists")
        unknown = sorted(str(p) for p in group.members if p not in self._assets)
        if unknown:
            raise DomainError(f"asset group {group.name!r} names unknown assets: {unknown}")
        self._groups[group.name] = group

    def group(self, name: str) -> AssetGroup:
        try:
            return self._groups[name]
        except KeyError:
            raise DomainError(f"unknown asset group {name!r}") from None

    @property
    def groups(self) -> tuple[AssetGroup, ...]:
        return tuple(self._groups.values())
