"""The payload format of one spool record: a batch of changes of one device.

Version 1 (first byte) is UTF-8 JSON ``[base_ts, names, ts_offsets, values]`` (C-accelerated,
exact for bool/int/float incl. NaN/inf, str and None); bytes are ``{"b": base64}`` and arrays
``{"t": [...]}``. Version 2 appends a fifth element, ``{index: quality}`` for the changes whose
Sparkplug ``Quality`` is not GOOD; a record of only GOOD values is still written as version 1,
so the common case costs nothing and version-1 records from an older edge stay readable. Kept
independent of the Sparkplug codec so the spool round-trips a
``TagChange`` exactly, datatype-free.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass

from andon.edge.sources.base import GOOD, TagChange
from andon.sparkplug.model import MetricValue

__all__ = [
    "ChangeColumns",
    "SpoolError",
    "SpoolFullError",
    "decode_changes",
    "decode_columns",
    "encode_changes",
]

_FORMAT_JSON_V1 = 1
_FORMAT_JSON_V2 = 2
_JSON_NATIVE = (bool, int, float, str, type(None))


class SpoolError(Exception):
    """The spool could not do what was asked; nothing was partly written."""


class SpoolFullError(SpoolError):
    """The disk (or the database's page limit) is full; the append was rolled back."""


@dataclass(frozen=True, slots=True)
class ChangeColumns:
    """The changes of one record as columns, as the flush encodes them (no object per value).

    ``qualities`` holds only the changes whose quality is not GOOD, by index.
    """

    names: list[str]
    values: list[MetricValue]
    timestamps: list[int]
    qualities: dict[int, int]


def encode_changes(device_id: str | None, changes: Sequence[TagChange]) -> bytes:
    """Payload of one record (version 1, or 2 with qualities); changes belong to ``device_id``."""
    if not changes:
        raise ValueError("a spool record needs at least one change")
    owner = device_id or ""
    base = changes[0].ts_ms
    names: list[str] = []
    offsets: list[int] = []
    values: list[object] = []
    qualities: dict[str, int] = {}
    for index, change in enumerate(changes):
        if change.quality != GOOD:
            qualities[str(index)] = change.quality
        if change.device_id != owner:
            raise ValueError(f"change of {change.device_id!r} in a record of {owner!r}")
        names.append(change.name)
        offsets.append(change.ts_ms - base)
        value = change.value
        if isinstance(value, _JSON_NATIVE):
            values.append(value)
        elif isinstance(value, bytes):
            values.append({"b": base64.b64encode(value).decode("ascii")})
        elif isinstance(value, tuple):
            values.append({"t": list(value)})
        else:
            raise TypeError(f"{change.name}: cannot spool a {type(value).__name__} value")
    fields: list[object] = [base, names, offsets, values]
    if qualities:
        fields.append(qualities)
    body = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
    return bytes((_FORMAT_JSON_V2 if qualities else _FORMAT_JSON_V1,)) + body.encode()


def decode_columns(payload: bytes) -> ChangeColumns:
    """The changes of a record payload as columns (the device is the record's)."""
    if not payload or payload[0] not in (_FORMAT_JSON_V1, _FORMAT_JSON_V2):
        raise SpoolError(f"unknown spool payload format {payload[:1]!r}")
    fields = json.loads(payload[1:])
    base, names, offsets, values = fields[:4]
    if not len(names) == len(offsets) == len(values):
        raise SpoolError("spool payload columns differ in length")
    if any(type(value) is dict for value in values):  # bytes or an array: rare
        values = [_decode_value(value) for value in values]
    qualities = (
        {int(index): quality for index, quality in fields[4].items()}
        if payload[0] == _FORMAT_JSON_V2
        else {}
    )
    return ChangeColumns(names, values, [base + offset for offset in offsets], qualities)


def decode_changes(device_id: str | None, payload: bytes) -> tuple[TagChange, ...]:
    columns = decode_columns(payload)
    owner = device_id or ""
    qualities = columns.qualities
    return tuple(
        TagChange(owner, name, value, ts_ms, qualities.get(index, GOOD))
        for index, (name, value, ts_ms) in enumerate(
            zip(columns.names, columns.values, columns.timestamps, strict=True)
        )
    )


def _decode_value(raw: object) -> MetricValue:
    if isinstance(raw, dict):
        if "b" in raw:
            return base64.b64decode(raw["b"])
        return tuple(raw["t"])
    return raw  # type: ignore[return-value]  # JSON scalars are MetricValue scalars
