"""How a sample value maps onto the value columns of the ``sample`` table, and back.

Pure Python (no database imports) so the in-memory store applies exactly the same rules as the
SQL stores. Each stored row sets at most one of ``value_double``, ``value_int``, ``value_text``,
``value_bytes``; all four ``NULL`` is an explicit ``None``. The tag's Sparkplug datatype (fixed
when the tag is first seen) resolves the three cases the columns alone cannot:

* Boolean (11): stored as 0/1 in ``value_int``, read back as ``bool``.
* UInt64 (8): stored in the signed 64-bit ``value_int`` as its two's complement, so the whole
  range 0 .. 2**64-1 round-trips exactly.
* Float/Double (9, 10): NaN is stored as the text ``'NaN'`` (SQLite turns a NaN REAL into
  NULL); a Float/Double tag therefore accepts no other strings. +/-inf are stored as floats;
  -0.0 is stored as 0.0 (SQLite cannot keep the sign of zero).

Anything that could not come back exactly is rejected with :class:`UnstorableValueError`
(the historian writer quarantines such a sample instead of retrying it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from andon.storage.types import Sample, SampleValue

__all__ = [
    "DATATYPE_BOOLEAN",
    "DATATYPE_BYTES",
    "DATATYPE_DOUBLE",
    "DATATYPE_INT64",
    "DATATYPE_STRING",
    "DATATYPE_UINT64",
    "DATATYPE_UNKNOWN",
    "FLOAT_DATATYPES",
    "EncodedValue",
    "SampleRow",
    "UnstorableValueError",
    "decode_value",
    "encode_sample_rows",
    "encode_value",
    "infer_datatype",
    "numeric_value",
]

DATATYPE_UNKNOWN = 0
DATATYPE_INT64 = 4
DATATYPE_UINT64 = 8
DATATYPE_DOUBLE = 10
DATATYPE_BOOLEAN = 11
DATATYPE_STRING = 12
DATATYPE_BYTES = 17
FLOAT_DATATYPES = frozenset({9, 10})

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1
SMALLINT_MIN = -(2**15)
SMALLINT_MAX = 2**15 - 1
NAN_TEXT = "NaN"

#: (value_double, value_int, value_text, value_bytes)
EncodedValue = tuple[float | None, int | None, str | None, bytes | None]
#: (tag_id, ts, value_double, value_int, value_text, value_bytes, quality, is_historical):
#: the column order of the ``sample`` table, used by every store's insert.
SampleRow = tuple[int, int, float | None, int | None, str | None, bytes | None, int, bool]

_NULL: EncodedValue = (None, None, None, None)


class UnstorableValueError(ValueError):
    """A sample the historian cannot store exactly. Not transient: retrying will not help."""


def infer_datatype(value: SampleValue) -> int:
    """The datatype a new tag gets when the sample carries none (``datatype == 0``)."""
    if isinstance(value, bool):
        return DATATYPE_BOOLEAN
    if isinstance(value, int):
        return DATATYPE_UINT64 if value > INT64_MAX else DATATYPE_INT64
    if isinstance(value, float):
        return DATATYPE_DOUBLE
    if isinstance(value, str):
        return DATATYPE_STRING
    if isinstance(value, bytes):
        return DATATYPE_BYTES
    return DATATYPE_UNKNOWN


def encode_value(value: SampleValue, datatype: int) -> EncodedValue:
    """Map ``value`` onto the value columns of a tag with ``datatype``; reject what won't fit."""
    # Floats and ints first: this runs once per sample on the ingest hot path.
    if isinstance(value, float):
        if not math.isnan(value):
            # + 0.0 turns -0.0 into 0.0: SQLite stores integral REALs as integers and loses
            # the sign of zero, and every store must give the same answer.
            return (value + 0.0, None, None, None)
        if datatype not in FLOAT_DATATYPES:
            raise UnstorableValueError(
                f"NaN is only storable for Float/Double tags (datatype {datatype})"
            )
        return (None, None, NAN_TEXT, None)
    if isinstance(value, bool):
        return (None, 1 if value else 0, None, None)
    if isinstance(value, int):
        if datatype == DATATYPE_UINT64:
            if not 0 <= value <= UINT64_MAX:
                raise UnstorableValueError(f"{value} is out of the UInt64 range")
            return (None, value - 2**64 if value > INT64_MAX else value, None, None)
        if not INT64_MIN <= value <= INT64_MAX:
            raise UnstorableValueError(f"{value} is out of the Int64 range (datatype {datatype})")
        if datatype == DATATYPE_BOOLEAN and value not in (0, 1):
            raise UnstorableValueError(f"{value} is not a Boolean value")
        return (None, value, None, None)
    if value is None:
        return _NULL
    if isinstance(value, str):
        if datatype in FLOAT_DATATYPES:
            # The text column of a Float/Double tag is reserved for NaN.
            raise UnstorableValueError(f"a string is not storable for Float/Double tags: {value!r}")
        if "\x00" in value:
            raise UnstorableValueError("strings with NUL characters are not storable")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise UnstorableValueError(f"string is not valid Unicode: {exc}") from None
        return (None, None, value, None)
    if isinstance(value, bytes):
        return (None, None, None, value)
    raise UnstorableValueError(f"unsupported value type {type(value).__name__}")


def decode_value(
    value_double: float | None,
    value_int: int | None,
    value_text: str | None,
    value_bytes: bytes | None,
    datatype: int,
) -> SampleValue:
    """The inverse of :func:`encode_value`."""
    if value_double is not None:
        return float(value_double)
    if value_int is not None:
        if datatype == DATATYPE_BOOLEAN:
            return bool(value_int)
        if datatype == DATATYPE_UINT64 and value_int < 0:
            return value_int + 2**64
        return int(value_int)
    if value_text is not None:
        if datatype in FLOAT_DATATYPES:
            return float("nan")
        return value_text
    if value_bytes is not None:
        return bytes(value_bytes)
    return None


def numeric_value(value_double: float | None, value_int: int | None, datatype: int) -> float | None:
    """The number a row contributes to min/max/avg, as the SQL stores compute it."""
    if value_double is not None:
        return value_double
    if value_int is not None:
        if datatype == DATATYPE_UINT64 and value_int < 0:
            return float(value_int) + 2.0**64
        return float(value_int)
    return None


def encode_sample_rows(
    samples: Sequence[Sample], tags: Mapping[str, tuple[int, int]]
) -> list[SampleRow]:
    """Rows for ``samples``, given ``tags``: path -> (tag id, datatype).

    Keeps only the first sample per (tag, ts) within the batch, so "first write wins" holds
    inside one batch as well as across batches, whatever order the database applies rows in.
    """
    rows: list[SampleRow] = []
    append = rows.append
    seen: set[tuple[int, int]] = set()
    remember = seen.add
    # Unpacked rather than read by name: cheaper per sample, and plain tuples of the same fields
    # work too (the historian's insert process receives them so).
    for tag, ts, value, quality, is_historical, _ in samples:
        tag_id, datatype = tags[tag]
        if type(ts) is not int or not INT64_MIN <= ts <= INT64_MAX:
            raise UnstorableValueError(f"timestamp must be an int64 of UTC ms, got {ts!r}")
        key = (tag_id, ts)
        if key in seen:
            continue
        remember(key)
        if not SMALLINT_MIN <= quality <= SMALLINT_MAX:
            raise UnstorableValueError(f"quality {quality} is out of range")
        if type(value) is float and value == value:  # noqa: PLR0124 (a float, not NaN: most values)
            append((tag_id, ts, value + 0.0, None, None, None, quality, bool(is_historical)))
            continue
        vd, vi, vt, vb = encode_value(value, datatype)
        append((tag_id, ts, vd, vi, vt, vb, quality, bool(is_historical)))
    return rows
