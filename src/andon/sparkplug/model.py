"""Plain-Python view of Sparkplug B payloads.

The codec (``andon.sparkplug.codec``) converts between these dataclasses and the protobuf wire
format; nothing outside ``andon.sparkplug`` touches the generated protobuf classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum

__all__ = [
    "ARRAY_TYPES",
    "FLOAT_TYPES",
    "INTEGER_RANGES",
    "DataType",
    "Metric",
    "MetricValue",
    "Payload",
    "PropertyValue",
    "Quality",
]


class DataType(IntEnum):
    """Sparkplug B 3.0 datatype codes (SPARKPLUG.md §3)."""

    UNKNOWN = 0
    INT8 = 1
    INT16 = 2
    INT32 = 3
    INT64 = 4
    UINT8 = 5
    UINT16 = 6
    UINT32 = 7
    UINT64 = 8
    FLOAT = 9
    DOUBLE = 10
    BOOLEAN = 11
    STRING = 12
    DATETIME = 13
    TEXT = 14
    UUID = 15
    DATASET = 16
    BYTES = 17
    FILE = 18
    TEMPLATE = 19
    PROPERTYSET = 20
    PROPERTYSETLIST = 21
    INT8_ARRAY = 22
    INT16_ARRAY = 23
    INT32_ARRAY = 24
    INT64_ARRAY = 25
    UINT8_ARRAY = 26
    UINT16_ARRAY = 27
    UINT32_ARRAY = 28
    UINT64_ARRAY = 29
    FLOAT_ARRAY = 30
    DOUBLE_ARRAY = 31
    BOOLEAN_ARRAY = 32
    STRING_ARRAY = 33
    DATETIME_ARRAY = 34


class Quality(IntEnum):
    """Values of the reserved ``Quality`` property (Int32)."""

    BAD = 0
    GOOD = 192
    STALE = 500


#: Inclusive value ranges of the integer datatypes.
INTEGER_RANGES: Mapping[DataType, tuple[int, int]] = {
    DataType.INT8: (-(2**7), 2**7 - 1),
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.INT64: (-(2**63), 2**63 - 1),
    DataType.UINT8: (0, 2**8 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.UINT32: (0, 2**32 - 1),
    DataType.UINT64: (0, 2**64 - 1),
    DataType.DATETIME: (0, 2**64 - 1),
}

FLOAT_TYPES = frozenset({DataType.FLOAT, DataType.DOUBLE})

ARRAY_TYPES = frozenset(DataType(code) for code in range(22, 35))

#: A scalar metric value; ``None`` is an explicit null (``is_null`` on the wire).
#: Array datatypes use a tuple of scalars.
MetricValue = bool | int | float | str | bytes | tuple[bool | int | float | str, ...] | None

#: A property value; nested property sets are not used by Andon.
PropertyValue = bool | int | float | str | None


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric of a payload.

    ``name`` is ``None`` when a data message carries only the alias. ``datatype`` is ``None`` when
    a data message omits it (allowed outside births). ``timestamp`` is UTC milliseconds.
    ``properties`` carries e.g. ``{"Quality": 192}``.
    """

    name: str | None
    value: MetricValue
    datatype: DataType | None = None
    timestamp: int | None = None
    alias: int | None = None
    is_historical: bool = False
    is_transient: bool = False
    properties: Mapping[str, PropertyValue] = field(default_factory=dict)

    @property
    def is_null(self) -> bool:
        return self.value is None

    @property
    def quality(self) -> Quality:
        """The reserved ``Quality`` property, GOOD when absent or unrecognised."""
        raw = self.properties.get("Quality")
        if isinstance(raw, int) and not isinstance(raw, bool) and raw in (0, 192, 500):
            return Quality(raw)
        return Quality.GOOD


@dataclass(frozen=True, slots=True)
class Payload:
    """A Sparkplug B payload (protobuf ``Payload``)."""

    timestamp: int | None
    metrics: tuple[Metric, ...] = ()
    seq: int | None = None
    uuid: str | None = None
    body: bytes | None = None
