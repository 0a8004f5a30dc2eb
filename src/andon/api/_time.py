"""Formatting of stored UTC milliseconds for API responses."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["iso_ms", "iso_ms_or_none"]


def iso_ms(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def iso_ms_or_none(ts_ms: int | None) -> str | None:
    return None if ts_ms is None else iso_ms(ts_ms)
