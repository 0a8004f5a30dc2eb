"""Parsing of time instants and durations in query strings."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = ["MAX_INSTANT_MS", "MIN_INSTANT_MS", "parse_duration_ms", "parse_instant_ms"]

_EPOCH_MS = re.compile(r"^-?[0-9]+$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
# Instants outside what datetime (and so the API's ISO output) can represent are refused: they
# would otherwise fail later, when formatted or sent to the database, as a server error.
MIN_INSTANT_MS = (datetime.min.replace(tzinfo=UTC) - _EPOCH) // _ONE_MS
MAX_INSTANT_MS = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // _ONE_MS


def parse_instant_ms(text: str) -> int:
    """An ISO 8601 instant (a naive one is taken as UTC) or epoch milliseconds."""
    stripped = text.strip()
    if _EPOCH_MS.match(stripped):
        value = int(stripped)
    else:
        try:
            moment = datetime.fromisoformat(stripped.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(
                f"not a time: {text!r} (use ISO 8601, e.g. 2026-01-31T08:00:00Z, or epoch ms)"
            ) from exc
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        value = (moment - _EPOCH) // _ONE_MS  # exact integer arithmetic, floored
    if not MIN_INSTANT_MS <= value <= MAX_INSTANT_MS:
        raise ValueError(
            f"time out of range: {text!r} (years 0001 to 9999 UTC; epoch ms "
            f"{MIN_INSTANT_MS} to {MAX_INSTANT_MS})"
        )
    return value


def parse_duration_ms(text: str) -> int:
    """``500ms``, ``10s``, ``5m``, ``1h``, ``1d`` or plain milliseconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (e.g. 500ms, 10s, 5m, 1h, 1d)")
    number, unit = match.groups()
    exact = float(number) * _UNIT_MS[unit or "ms"]
    if exact > MAX_INSTANT_MS - MIN_INSTANT_MS:  # also inf, from a very long number
        raise ValueError(f"duration too long: {text!r}")
    ms = round(exact)
    if ms <= 0:
        raise ValueError(f"duration must be positive: {text!r}")
    return ms
