"""Parsing of time instants and durations in query strings."""

from __future__ import annotations

import re
from datetime import UTC, datetime

__all__ = ["parse_duration_ms", "parse_instant_ms"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_instant_ms(text: str) -> int:
    """An ISO 8601 instant (a naive one is taken as UTC) or epoch milliseconds."""
    stripped = text.strip()
    if stripped.lstrip("-").isdigit():
        return int(stripped)
    try:
        moment = datetime.fromisoformat(stripped.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(
            f"not a time: {text!r} (use ISO 8601, e.g. 2026-01-31T08:00:00Z, or epoch ms)"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def parse_duration_ms(text: str) -> int:
    """``500ms``, ``10s``, ``5m``, ``1h``, ``1d`` or plain milliseconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (e.g. 500ms, 10s, 5m, 1h, 1d)")
    number, unit = match.groups()
    ms = round(float(number) * _UNIT_MS[unit or "ms"])
    if ms <= 0:
        raise ValueError(f"duration must be positive: {text!r}")
    return ms
