"""Every setting Andon reads, declared once as data (name, default, help).

Values come from, highest priority first: environment variables (``ANDON_`` prefix, ``__`` between
nested names, e.g. ``ANDON_MQTT__HOST``), then the TOML file given with ``--config``, then the
defaults below. ``docs/configuration.md`` is generated from these declarations
(``andon settings-doc``), so the help text here *is* the documentation.
"""

from __future__ import annotations

import contextvars
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from andon.edge.sources.config import FieldError, ModbusDeviceConfig, OpcUaDeviceConfig
from andon.mqtt.interface import MqttEndpoint, TlsSettings
from andon.settings_cluster import ClusterSettings, DomainSettings
from andon.settings_outbox import EnterpriseSettingsBase, EnterpriseSourceBase, OutboxSettings

__all__ = [
    "ClusterSettings",
    "DomainSettings",
    "EdgeSettings",
    "EnterpriseSettings",
    "EnterpriseSourceSettings",
    "MqttSettings",
    "OutboxSettings",
    "ServerSettings",
    "SettingDoc",
    "SimulatorSettings",
    "SpoolSettings",
    "iter_setting_docs",
    "load_settings",
]

_CONFIG_FILE: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "andon_config_file", default=None
)


class MqttSettings(BaseModel):
    """Connection to one MQTT broker."""

    host: str = Field("127.0.0.1", description="Broker host name or address.")
    port: int = Field(1883, description="Broker TCP port (8883 is usual for TLS).")
    username: str | None = Field(None, description="User name, if the broker requires one.")
    password: SecretStr | None = Field(
        None, description="Password; never logged. Prefer the environment variable to the file."
    )
    tls_ca_file: Path | None = Field(None, description="CA bundle; setting it turns TLS on.")
    tls_cert_file: Path | None = Field(None, description="Client certificate for mutual TLS.")
    tls_key_file: Path | None = Field(None, description="Private key of the client certificate.")
    keepalive_s: int = Field(
        10,
        description=(
            "MQTT keep-alive. A dead link is noticed after up to 1.5 x this; the edge's rolling "
            "buffer covers that window."
        ),
    )

    def endpoint(self, client_id: str) -> MqttEndpoint:
        """The broker client's view of these settings (the password revealed only here)."""
        tls = None
        if self.tls_ca_file is not None:
            tls = TlsSettings(
                ca_file=str(self.tls_ca_file),
                cert_file=str(self.tls_cert_file) if self.tls_cert_file else None,
                key_file=str(self.tls_key_file) if self.tls_key_file else None,
            )
        return MqttEndpoint(
            host=self.host,
            port=self.port,
            client_id=client_id,
            username=self.username,
            password=self.password.get_secret_value() if self.password else None,
            tls=tls,
            keepalive_s=self.keepalive_s,
        )


class SpoolSettings(BaseModel):
    """The edge's disk store-and-forward spool."""

    path: Path = Field(Path("andon-data/edge-spool.db"), description="SQLite file of the spool.")
    max_mb: float = Field(
        500.0, description="Largest spool size; past it the oldest data is dropped and counted."
    )
    max_age_s: float = Field(
        31 * 24 * 3600.0,
        description="Oldest data kept (default 31 days); older data is dropped and counted.",
    )
    flush_batch_records: int = Field(
        200, description="Spool records (one device's changes of one poll each) per publish round."
    )
    flush_values_per_message: int = Field(
        1000,
        description=(
            "Most values in one NDATA/DDATA when consecutive spooled records of a device are "
            "sent together (the flush quantity)."
        ),
    )
    flush_period_ms: int = Field(
        0, description="Pause between publish rounds while a backlog is flushed (0: none)."
    )
    flush_rounds_in_flight: int = Field(
        4,
        ge=1,
        description=(
            "Publish rounds sent before the oldest one's acknowledgements are awaited (1: one "
            "round at a time). After a crash up to this many rounds are sent twice (the host "
            "drops the copies)."
        ),
    )
    flush_mode: Literal["in_order", "interleaved"] = Field(
        "in_order",
        description=(
            "in_order: the whole backlog goes before live data (live values wait in the spool); "
            "interleaved: live data first, the backlog alongside it."
        ),
    )
    rolling_window_s: float = Field(
        30.0,
        description=(
            "Acknowledged data is kept this long and re-sent as history after the next births, "
            "covering a host or link that died unnoticed (>= 2 x keep-alive; 0 turns it off)."
        ),
    )


class SimulatorSettings(BaseModel):
    """The built-in plant simulator source."""

    enabled: bool = Field(True, description="Use the built-in plant simulator as a source.")
    seed: int = Field(1, description="Random seed; the same seed gives the same plant behaviour.")
    time_scale: float = Field(
        1.0, description="Speed-up of machine behaviour (10 = state changes ten times as often)."
    )
    machines: int = Field(
        0,
        description=(
            "0 simulates the demo plant (2 lines, 6 machines); N > 0 simulates N generic "
            "machines, for load tests."
        ),
    )
    tags_per_machine: int = Field(
        25, description="Metrics per generic machine (only when machines > 0)."
    )
    line: str | None = Field(
        None, description="Only the demo plant's machines of this line (e.g. Line1)."
    )
    record_path: Path | None = Field(
        None,
        description=(
            "Append every value the simulator produces to this JSON-lines file (for tests and "
            "audits that compare it with the history)."
        ),
    )


class _CommandSettings(BaseSettings):
    """What every command's settings share: the ``ANDON_`` environment, then the TOML file."""

    model_config = SettingsConfigDict(
        env_prefix="ANDON_", env_nested_delimiter="__", extra="forbid"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlFileSource(settings_cls))


class EdgeSettings(_CommandSettings):
    """Settings of ``andon edge``."""

    group_id: str = Field("Plant1", description="Sparkplug group ID.")
    edge_node_id: str = Field("Edge1", description="Sparkplug edge node ID (unique in the group).")
    primary_host_id: str | None = Field(
        None,
        description=(
            "Sparkplug host ID of the primary host. When set, the edge births only while that "
            "host's STATE is online and stores data while it is offline."
        ),
    )
    poll_interval_s: float = Field(1.0, description="How often sources are polled.")
    mqtt: MqttSettings = Field(default_factory=MqttSettings, description="Broker connection.")
    fallback_brokers: list[MqttSettings] = Field(
        default_factory=list,
        description=(
            "Further brokers tried in order after `mqtt` when it is unreachable or when the "
            "primary host goes offline; the edge is never connected to two at once."
        ),
    )
    spool: SpoolSettings = Field(default_factory=SpoolSettings, description="Disk spool.")
    simulator: SimulatorSettings = Field(
        default_factory=SimulatorSettings, description="Built-in simulator."
    )
    opcua: list[OpcUaDeviceConfig] = Field(
        default_factory=list,
        description=(
            "OPC UA devices, one `[[opcua]]` table each with endpoint, security and "
            "`[[opcua.tags]]` (see README, Sources: OPC UA and Modbus TCP)."
        ),
    )
    modbus: list[ModbusDeviceConfig] = Field(
        default_factory=list,
        description=(
            "Modbus TCP devices, one `[[modbus]]` table each with host, unit_id and "
            "`[[modbus.tags]]` (see README, Sources: OPC UA and Modbus TCP)."
        ),
    )

    @model_validator(mode="after")
    def _unique_devices(self) -> EdgeSettings:
        seen: set[str] = set()
        named: list[tuple[str, int, str]] = [
            *(("opcua", i, d.device) for i, d in enumerate(self.opcua)),
            *(("modbus", i, d.device) for i, d in enumerate(self.modbus)),
        ]
        for kind, index, device in named:
            if device in seen:
                raise FieldError([kind, index, "device"], f"device {device!r} is declared twice")
            seen.add(device)
        return self


class EnterpriseSourceSettings(EnterpriseSourceBase):
    """One site broker the enterprise consumes (``andon.settings_outbox``)."""

    mqtt: MqttSettings = Field(default_factory=MqttSettings, description="The site broker.")


class EnterpriseSettings(EnterpriseSettingsBase):
    """``[enterprise]`` with its sources (``andon.settings_outbox``)."""

    sources: list[EnterpriseSourceSettings] = Field(
        default_factory=list,
        description=(
            "Site brokers, one `[[enterprise.sources]]` table each with name, sites and "
            "`[enterprise.sources.mqtt]`; none: this server's own `mqtt` broker, every site."
        ),
    )


class ServerSettings(_CommandSettings):
    """Settings of ``andon server`` (and of the server inside ``andon demo``)."""

    host_id: str = Field(
        "andon", description="Sparkplug host application ID; STATE is spBv1.0/STATE/<host_id>."
    )
    database_url: str = Field(
        "sqlite:///andon-data/andon.db",
        description=(
            "Historian database: sqlite:///path/file.db or postgresql://user@host:5432/db."
        ),
    )
    http_host: str = Field("127.0.0.1", description="Address the API and web UI listen on.")
    http_port: int = Field(8080, description="Port of the API and web UI.")
    mqtt: MqttSettings = Field(default_factory=MqttSettings, description="Broker connection.")
    extra_brokers: list[MqttSettings] = Field(
        default_factory=list,
        description=(
            "Further brokers the host connects to at the same time as `mqtt` (edges may use "
            "any of them); each gets its own STATE birth and timestamp."
        ),
    )
    state_v4_mode: bool = Field(
        False,
        description=(
            "When another client declares this host offline: false republishes the birth "
            "with the same timestamp (Sparkplug 3.0); true reconnects with a new one."
        ),
    )
    sparkplug_filter: str = Field(
        "spBv1.0/#", description="Sparkplug topic filter the host subscribes to."
    )
    rebirth_debounce_ms: int = Field(
        5000, description="At most one rebirth request per edge node in this many ms."
    )
    reorder_timeout_ms: int = Field(
        2000, description="How long a seq gap may stay open before a rebirth is requested."
    )
    historian_queue_capacity: int = Field(
        200_000,
        description=(
            "Samples waiting for the historian writer, the batch being written included; when "
            "full, ingest waits (back-pressure) rather than dropping. Keep it at least twice "
            "historian_max_batch so that ingest goes on during a commit."
        ),
    )
    historian_max_batch: int = Field(
        100_000,
        description=(
            "Largest transaction of the writer, in samples. Under load the writer takes what "
            "queued during the previous commit. Samples are stored by tag, so a commit writes "
            "about one database page per tag it touches; on SQLite a batch of fewer than four "
            "values per tag (a wide plant at 1 Hz) is therefore staged in arrival order and "
            "moved to the by-tag table in bulk every 500,000 rows."
        ),
    )
    historian_insert_process: bool = Field(
        True,
        description=(
            "Run the historian's inserts in a child process with its own database connection, "
            "so that they use a second core beside the server's decoding (one Python process "
            "runs on one core at a time). The writer's queue, order, spool and quarantine stay "
            "in the server; a lost child is restarted and its batch retried. Off: one process."
        ),
    )
    historian_spool_path: Path | None = Field(
        None,
        description=(
            "While the database is unreachable the historian writes here, in order, and drains "
            "it when the database returns (a record leaves only after its commit). Default: "
            "beside a SQLite database, or andon-data/historian-spool-<database>.db."
        ),
    )
    historian_spool_max_mb: float = Field(
        1024.0,
        description="Largest historian spool; when full, ingest waits (nothing is dropped).",
    )
    ingest_queue_capacity: int = Field(
        500,
        description=(
            "Received MQTT messages waiting for decoding (bounded). Messages are acknowledged "
            "to the broker once queued, so this queue and the historian's must drain well "
            "within the edges' rolling_window_s for a kill -9 of the server to lose nothing."
        ),
    )
    ingest_gather_ms: float = Field(
        10.0,
        ge=0,
        le=1000,
        description=(
            "When fewer received messages are waiting than a batch holds (500), how long the "
            "ingest thread lets more arrive before handling them together: a batch costs far "
            "less CPU than its messages one by one (1,000 machines at 1 Hz: 0.72 -> 0.58 of a "
            "core at 10 ms), and adds at most this much to the edge-to-screen latency. 0: "
            "handle what is waiting at once."
        ),
    )
    max_clock_skew_s: float = Field(
        300.0,
        description=(
            "A value stamped further ahead of this server's clock is historised but not shown "
            "live, and counted (future_timestamp): it would otherwise hide every later value."
        ),
    )
    session_ttl_hours: float = Field(
        12.0, description="How long a web UI login (session cookie) lasts, in hours."
    )
    token_ttl_days: float = Field(
        90.0,
        description=(
            "Lifetime of API bearer tokens from POST /api/v1/auth/token and `andon user token`."
        ),
    )
    metrics_require_login: bool = Field(
        False,
        description=(
            "Require a login for /metrics too (off: Prometheus scrapers usually carry no token)."
        ),
    )
    plant_file: Path | None = Field(
        None,
        description=(
            "Plant file (TOML, see examples/plant.toml): assets, tag bindings, state codes, "
            "reasons, items and rates, shift calendars, orders and runs. Loaded and checked at "
            "start and stored in the database; without it the MES derives nothing (the "
            "historian still records every tag)."
        ),
    )
    uns_enabled: bool = Field(
        True,
        description=(
            "Mirror each asset's current state, mode, reason, run, counts and shift OEE as "
            "retained JSON (QoS 1) on andon/v1/<asset path>/state and /oee, at most once per "
            "uns_min_interval_s per asset and again on every broker reconnect (needs "
            "plant_file)."
        ),
    )
    mes_write_delay_s: float = Field(
        0.5,
        ge=0,
        le=10,
        description=(
            "How long derived MES changes (intervals, counts, rollups) gather before they are "
            "written in one transaction; increments to the same rollup bucket merge meanwhile. "
            "Reads that must see the newest data (edits, the UNS mirror) flush first."
        ),
    )
    uns_min_interval_s: float = Field(
        5.0,
        ge=0.1,
        description=(
            "Shortest time between two UNS documents of one asset: a machine whose counters "
            "change every second republishes at this pace (each document costs an OEE query; "
            "the web UI's live feed is the sub-second path)."
        ),
    )
    mes_horizon_hours: float = Field(
        168.0,
        gt=0,
        description=(
            "How far behind its newest data the MES keeps each asset's derivation in memory, "
            "and the window it reloads at start: store-and-forward data up to this late is "
            "derived exactly; older data is historised but not derived (logged and counted). "
            "Edits of older intervals load them from the database on demand."
        ),
    )
    mes_edit_max_days: float = Field(
        31.0,
        gt=0,
        description=(
            "Longest period one count edit or one state added by hand may cover, in days (an "
            "edit is one transaction: its corrections and rollup changes grow with the period). "
            "A longer edit is refused (422); split it into several."
        ),
    )
    mes_edit_max_age_days: float = Field(
        31.0,
        gt=0,
        description=(
            "How far back, in days, an edit of states (reason, split, revert, state added by "
            "hand) may reach beyond what the MES holds in memory (mes_horizon_hours): such an "
            "edit loads the intervals from there on into memory first. Older: refused (422)."
        ),
    )
    mes_query_max_days: float = Field(
        367.0,
        gt=0,
        description=(
            "Longest period, in days, of one query split into buckets (by=hour, day or shift "
            "in /api/v1/oee, /api/v1/assets/{path}/counts and /api/v1/export) and of one export "
            "of states, counts or OEE. A longer one is refused (422); ask in parts."
        ),
    )
    tag_write_timeout_s: float = Field(
        5.0,
        gt=0,
        le=60,
        description=(
            "How long POST /api/v1/tags/write waits for the edge's answer to a write (the "
            "echo of the new value, or its error) before answering result=timeout."
        ),
    )
    live_client_queue: int = Field(
        10_000,
        gt=0,
        description=(
            "Values one web client (GET /api/v1/live) may have waiting to be sent; a client "
            "that falls further behind is dropped with a reason and reconnects, rather than "
            "slowing ingest."
        ),
    )
    initial_admin_password: SecretStr | None = Field(
        None,
        description=(
            "If set and the database has no user yet, user `admin` is created with this "
            "password at start (for containers). Never logged; prefer the environment variable."
        ),
    )
    cluster: ClusterSettings = Field(
        default_factory=ClusterSettings, description="Redundancy and domains of control."
    )
    outbox: OutboxSettings = Field(
        default_factory=OutboxSettings, description="Site -> enterprise record forwarding."
    )
    enterprise: EnterpriseSettings = Field(
        default_factory=EnterpriseSettings, description="The enterprise's copy of the sites."
    )


class _TomlFileSource(PydanticBaseSettingsSource):
    """Reads the TOML file named by ``load_settings`` (lowest priority after the defaults)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = _CONFIG_FILE.get()
        if path is None:
            return {}
        with path.open("rb") as handle:
            return tomllib.load(handle)


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def load_settings(
    cls: type[SettingsT], config_file: Path | None = None, **overrides: Any
) -> SettingsT:
    """Build settings from defaults, an optional TOML file, the environment and overrides.

    Raises ``ValueError`` with one clear line naming the file and the offending field.
    """
    from pydantic import ValidationError

    from andon.edge.sources.config import describe_validation_error

    token = _CONFIG_FILE.set(config_file)
    try:
        return cls(**overrides)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{config_file}: not valid TOML: {exc}") from exc
    except ValidationError as exc:
        # One line per problem, naming the file, the line and the field.
        raise ValueError(
            "invalid settings:\n" + describe_validation_error(exc, config_file)
        ) from exc
    finally:
        _CONFIG_FILE.reset(token)


class SettingDoc(BaseModel):
    name: str
    env: str
    default: str
    help: str


def iter_setting_docs(cls: type[BaseModel], prefix: str = "") -> Iterator[SettingDoc]:
    """Every leaf setting of a settings class with its env name, default and help."""
    for name, field in cls.model_fields.items():
        annotation = field.annotation
        dotted = f"{prefix}{name}"
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from iter_setting_docs(annotation, prefix=f"{dotted}.")
            continue
        if field.default_factory is not None:
            default: object = field.default_factory()  # type: ignore[call-arg]
        else:
            default = field.default
        yield SettingDoc(
            name=dotted,
            env="ANDON_" + dotted.replace(".", "__").upper(),
            default="" if default is None else str(default),
            help=field.description or "",
        )
