"""Tag configuration of real equipment (``[[opcua]]`` and ``[[modbus]]`` in the edge file).

Declared as pydantic models so that ``load_settings`` validates them with everything else at
start-up; ``describe_validation_error`` turns a validation failure into lines naming the file,
the line and the field (``edge.toml:14: modbus[0].tags[2].type: ...``). Checks that need more
than one field (overlapping registers, security mode without a certificate) raise
``FieldError`` with the path of the offending field, so they point at a line too.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from andon.sparkplug.model import DataType

__all__ = [
    "OPCUA_TYPES",
    "REGISTER_TYPES",
    "FieldError",
    "ModbusDeviceConfig",
    "ModbusTagConfig",
    "OpcUaDeviceConfig",
    "OpcUaTagConfig",
    "describe_validation_error",
    "locate_in_toml",
]

#: Sparkplug datatypes an OPC UA tag may declare, by their configuration name.
OPCUA_TYPES: Mapping[str, DataType] = {
    "boolean": DataType.BOOLEAN,
    "int8": DataType.INT8,
    "int16": DataType.INT16,
    "int32": DataType.INT32,
    "int64": DataType.INT64,
    "uint8": DataType.UINT8,
    "uint16": DataType.UINT16,
    "uint32": DataType.UINT32,
    "uint64": DataType.UINT64,
    "float": DataType.FLOAT,
    "double": DataType.DOUBLE,
    "string": DataType.STRING,
    "datetime": DataType.DATETIME,
    "bytes": DataType.BYTES,
}

#: Modbus register encodings: registers taken (None: ``length``) and the raw Sparkplug type.
REGISTER_TYPES: Mapping[str, tuple[int | None, DataType]] = {
    "int16": (1, DataType.INT16),
    "uint16": (1, DataType.UINT16),
    "int32": (2, DataType.INT32),
    "uint32": (2, DataType.UINT32),
    "float32": (2, DataType.FLOAT),
    "float64": (4, DataType.DOUBLE),
    "string": (None, DataType.STRING),
}

OpcUaType = Literal[
    "boolean", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float", "double", "string", "datetime", "bytes",
]  # fmt: skip
ModbusType = Literal["bool", "int16", "uint16", "int32", "uint32", "float32", "float64", "string"]
_BIT_TABLES = frozenset({"coil", "discrete_input"})
_NODE_ID = re.compile(r"^(ns=\d+;|nsu=[^;]+;)?(i=\d+|s=.+|g=[0-9A-Fa-f-]{36}|b=[A-Za-z0-9+/=]+)$")
_ENDPOINT = re.compile(r"^opc\.tcp://[^/:\s]+(:\d{1,5})?(/\S*)?$")


class FieldError(ValueError):
    """A check across fields failed; ``path`` names the field inside the model checked."""

    def __init__(self, path: Sequence[str | int], message: str) -> None:
        super().__init__(message)
        self.path = tuple(path)


class _Tag(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Sparkplug metric name (`/` separates folders).")
    writable: bool = Field(False, description="Accept writes (DCMD) to this tag.")
    unit: str | None = Field(None, description="Engineering unit, shown in the UI.")
    description: str = ""
    min: float | None = Field(None, description="Smallest value a write may set.")
    max: float | None = Field(None, description="Largest value a write may set.")


class ModbusTagConfig(_Tag):
    table: Literal["coil", "discrete_input", "holding", "input"]
    address: int = Field(ge=0, le=65535, description="Zero-based address in its table.")
    type: ModbusType = "uint16"
    length: int | None = Field(None, ge=1, le=125, description="Registers of a string.")
    byte_order: Literal["big", "little"] = Field("big", description="Byte order in a register.")
    word_order: Literal["big", "little"] = Field(
        "big", description="Register order of a multi-register value (little = low word first)."
    )
    scale: float = Field(1.0, description="Published value = raw * scale + offset.")
    offset: float = 0.0

    @property
    def scaled(self) -> bool:
        return self.scale != 1.0 or self.offset != 0.0

    @property
    def size(self) -> int:
        """Registers (or bits) the tag occupies."""
        if self.type == "bool":
            return 1
        count = REGISTER_TYPES[self.type][0]
        return (self.length or 1) if count is None else count

    @property
    def datatype(self) -> DataType:
        if self.type == "bool":
            return DataType.BOOLEAN
        # A scaled integer is no longer an integer (0.1 degrees per count).
        return DataType.DOUBLE if self.scaled else REGISTER_TYPES[self.type][1]

    @model_validator(mode="after")
    def _check(self) -> ModbusTagConfig:
        if (self.table in _BIT_TABLES) != (self.type == "bool"):
            raise FieldError(
                ["type"],
                f"a {self.table} holds {'bits' if self.table in _BIT_TABLES else 'registers'}: "
                f"type {self.type!r} does not fit",
            )
        if self.type == "string" and self.length is None:
            raise FieldError(["length"], "a string needs length (registers, 2 characters each)")
        if self.type == "string" and self.scaled:
            raise FieldError(["scale"], "a string cannot be scaled")
        if self.writable and self.table in ("discrete_input", "input"):
            raise FieldError(["writable"], f"a {self.table} is read-only on every Modbus device")
        if self.address + self.size > 65536:
            raise FieldError(["address"], "the tag runs past address 65535")
        return self


class ModbusDeviceConfig(BaseModel):
    """One Modbus TCP device (one unit id on one server); becomes one Sparkplug device."""

    model_config = ConfigDict(extra="forbid")

    device: str = Field(min_length=1, description="Sparkplug device ID.")
    host: str = Field(min_length=1)
    port: int = Field(502, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=255, description="Modbus unit (slave) id of the device.")
    poll_interval_s: float = Field(1.0, gt=0)
    timeout_s: float = Field(1.0, gt=0, description="A request not answered by then failed.")
    max_registers_per_read: int = Field(
        125, ge=1, le=125, description="Largest register read the device accepts."
    )
    max_bits_per_read: int = Field(2000, ge=1, le=2000)
    max_gap: int = Field(
        16, ge=0, description="Unused registers a read may span to join two tags in one request."
    )
    backoff_initial_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    tags: list[ModbusTagConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> ModbusDeviceConfig:
        _unique_names(self.tags)
        by_table: dict[str, list[tuple[int, int, int]]] = {}
        for index, tag in enumerate(self.tags):
            by_table.setdefault(tag.table, []).append((tag.address, tag.size, index))
        for spans in by_table.values():
            spans.sort()
            for (start, size, first), (nxt, _, second) in itertools.pairwise(spans):
                if nxt < start + size:
                    a, b = self.tags[first], self.tags[second]
                    raise FieldError(
                        ["tags", second, "address"],
                        f"{b.table} {nxt} of {b.name!r} overlaps {a.name!r} "
                        f"({a.table} {start}..{start + size - 1})",
                    )
        return self


class OpcUaTagConfig(_Tag):
    node: str = Field(description="Node id, e.g. ns=2;s=Filler1.State or ns=2;i=1001.")
    type: OpcUaType
    sampling_interval_ms: float | None = Field(None, ge=0, description="Overrides the device's.")
    deadband: float | None = Field(
        None, ge=0, description="Absolute deadband: smaller changes are not reported."
    )

    @model_validator(mode="after")
    def _check(self) -> OpcUaTagConfig:
        if not _NODE_ID.match(self.node):
            raise FieldError(["node"], f"{self.node!r} is not a node id (ns=2;s=Name, ns=2;i=5)")
        return self


class OpcUaDeviceConfig(BaseModel):
    """One OPC UA server session; its tags become one Sparkplug device."""

    model_config = ConfigDict(extra="forbid")

    device: str = Field(min_length=1, description="Sparkplug device ID.")
    endpoint: str = Field(description="opc.tcp://host:port/path")
    security_policy: Literal[
        "None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"
    ] = "None"
    security_mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    certificate: Path | None = Field(None, description="Client certificate (DER or PEM).")
    private_key: Path | None = Field(None, description="Private key of the certificate (PEM).")
    server_certificate: Path | None = Field(
        None,
        description=(
            "The server's certificate: only this server is trusted. Without it, the certificate "
            "the server presents when asked for its endpoints is used."
        ),
    )
    application_uri: str | None = Field(
        None,
        description=(
            "Application URI announced to the server; default: the URI in the certificate "
            "(servers refuse a URI that does not match it)."
        ),
    )
    username: str | None = None
    password: SecretStr | None = Field(None, description="Never logged.")
    subscribe: bool = Field(
        True, description="Monitored items (report by exception); false polls with reads."
    )
    publishing_interval_ms: float = Field(250.0, gt=0)
    sampling_interval_ms: float = Field(100.0, ge=0)
    poll_interval_s: float = Field(1.0, gt=0, description="Read period when subscribe = false.")
    timeout_s: float = Field(4.0, gt=0)
    backoff_initial_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    tags: list[OpcUaTagConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> OpcUaDeviceConfig:
        if not _ENDPOINT.match(self.endpoint):
            raise FieldError(["endpoint"], f"{self.endpoint!r} is not opc.tcp://host:port/path")
        if (self.security_mode == "None") != (self.security_policy == "None"):
            raise FieldError(
                ["security_mode"], "security_mode and security_policy are both None or neither"
            )
        if self.security_mode != "None" and (self.certificate is None or self.private_key is None):
            raise FieldError(
                ["certificate"], f"{self.security_mode} needs certificate and private_key"
            )
        for name in ("certificate", "private_key", "server_certificate"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise FieldError([name], f"no such file: {path}")
        _unique_names(self.tags)
        return self


def _unique_names(tags: Sequence[_Tag]) -> None:
    seen: dict[str, int] = {}
    for index, tag in enumerate(tags):
        if tag.name in seen:
            raise FieldError(["tags", index, "name"], f"tag name {tag.name!r} is used twice")
        seen[tag.name] = index
        if tag.min is not None and tag.max is not None and tag.min > tag.max:
            raise FieldError(["tags", index, "min"], "min is greater than max")


# -- error messages with lines ------------------------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"']+)\s*=")


def locate_in_toml(text: str, path: Sequence[str | int]) -> int | None:
    """1-based line of ``path`` (e.g. ``("modbus", 0, "tags", 2, "type")``) in a TOML text:
    the key's own line, else the line of its nearest enclosing table or key."""
    lines: dict[tuple[str | int, ...], int] = {}
    counters: dict[tuple[str | int, ...], int] = {}
    table: tuple[str | int, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            resolved: tuple[str | int, ...] = ()
            parts = [p.strip().strip("\"'") for p in header.group(2).split(".")]
            for i, part in enumerate(parts):
                resolved = (*resolved, part)
                last = i == len(parts) - 1
                if last and header.group(1) == "[[":
                    counters[resolved] = counters.get(resolved, -1) + 1
                    resolved = (*resolved, counters[resolved])
                elif resolved in counters:
                    resolved = (*resolved, counters[resolved])
            table = resolved
            lines.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if key:
            lines.setdefault((*table, key.group(1).strip("\"'")), number)
    for end in range(len(path), 0, -1):
        found = lines.get(tuple(path[:end]))
        if found is not None:
            return found
    return None


def _dotted(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe_validation_error(exc: ValidationError, config_file: Path | None) -> str:
    """One line per problem: ``file:line: field.path: message``."""
    text = ""
    if config_file is not None:
        try:
            text = config_file.read_text(encoding="utf-8")
        except OSError:
            text = ""
    problems: list[str] = []
    for err in exc.errors():
        path: list[str | int] = [p for p in err["loc"] if isinstance(p, str | int)]
        message = str(err["msg"])
        cause: Any = (err.get("ctx") or {}).get("error")
        if isinstance(cause, FieldError):
            path.extend(cause.path)
            message = str(cause)
        line = locate_in_toml(text, path) if text else None
        where = f"{config_file}:{line}: " if line else (f"{config_file}: " if config_file else "")
        problems.append(f"{where}{_dotted(path)}: {message}")
    return "\n".join(problems)
