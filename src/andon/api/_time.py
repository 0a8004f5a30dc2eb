"""Formatting of stored UTC milliseconds for API responses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["iso_ms", "iso_ms_or_none"]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_ms(ts_ms: int) -> str:
    # Integer arithmetic: ts_ms / 1000 as a float loses the last millisecond far from 1970.
    try:
        return (_EPOCH + timedelta(milliseconds=ts_ms)).isoformat(timespec="milliseconds")
    except OverflowError:
        # A device clock far off (or a timestamp in the wrong unit) must not break a listing.
        return f"out of range ({ts_ms} ms)"


def iso_ms_or_none(ts_ms: int | None) -> str | None:
    return None if ts_ms is None else iso_ms(ts_ms)
