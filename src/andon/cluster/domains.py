"""Which domain of control an asset or an edge node belongs to.

Assets by hierarchy path prefix, whole segments only ("Site/Area" holds "Site/Area/Line1" but not
"Site/Area2"), the longest prefix winning; the empty prefix holds every asset. Edge nodes by
"group/node" glob patterns (``fnmatch``: ``*``, ``?``, ``[...]``), the first domain in the
configured order winning.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

from andon.cluster.plan import DomainPlan

__all__ = ["DomainMap", "normalize_asset_prefix", "overlapping_prefixes"]


def normalize_asset_prefix(prefix: str) -> str:
    """``"/Site/Area/"`` -> ``"Site/Area"``: paths compare segment by segment."""
    return "/".join(part for part in prefix.strip().split("/") if part)


def _covers(prefix: str, path: str) -> bool:
    return not prefix or path == prefix or path.startswith(prefix + "/")


def overlapping_prefixes(
    domains: Iterable[tuple[str, Iterable[str]]],
) -> tuple[str, str, str, str] | None:
    """The first (domain, prefix, other domain, other prefix) where one domain's asset prefix
    contains another domain's, or None. Prefixes within one domain may nest freely."""
    seen: list[tuple[str, str]] = []
    for name, prefixes in domains:
        mine = [normalize_asset_prefix(p) for p in prefixes]
        for prefix in mine:
            for other_name, other in seen:
                if other_name != name and (_covers(prefix, other) or _covers(other, prefix)):
                    return other_name, other, name, prefix
        seen.extend((name, p) for p in mine)
    return None


class DomainMap:
    """Maps asset paths and edge nodes to domain names (None: in no domain)."""

    def __init__(self, domains: Iterable[DomainPlan]) -> None:
        self._domains = tuple(domains)
        prefixes = [(normalize_asset_prefix(p), d.name) for d in self._domains for p in d.assets]
        # Longest first, so the most specific prefix decides.
        self._prefixes = sorted(prefixes, key=lambda item: -len(item[0]))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self._domains)

    def domain_of_asset(self, path: str) -> str | None:
        normalized = normalize_asset_prefix(path)
        for prefix, name in self._prefixes:
            if _covers(prefix, normalized):
                return name
        return None

    def domain_of_edge(self, group_id: str, edge_node_id: str) -> str | None:
        key = f"{group_id}/{edge_node_id}"
        for domain in self._domains:
            if any(fnmatchcase(key, pattern) for pattern in domain.edges):
                return domain.name
        return None

    def host_id_of(self, domain: str) -> str:
        """The Sparkplug primary host ID the edges of ``domain`` wait for."""
        for candidate in self._domains:
            if candidate.name == domain:
                return candidate.host_id
        raise KeyError(f"unknown domain {domain!r}")
