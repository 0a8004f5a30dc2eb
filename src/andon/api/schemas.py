"""Response bodies of the REST API (they define the OpenAPI document)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = [
    "AuditEntryOut",
    "DeviceOut",
    "EdgeNodeOut",
    "HealthOut",
    "HistoryBucketOut",
    "HistoryOut",
    "HistorySampleOut",
    "LiveTagOut",
    "LoginIn",
    "TokenOut",
    "UserCreateIn",
    "UserOut",
    "UserPatchIn",
]


class LiveTagOut(BaseModel):
    path: str = Field(description="group/edge node/device/metric")
    value: Any
    datatype: int = Field(description="Sparkplug datatype code")
    quality: str = Field(description="GOOD, BAD or STALE")
    source_time: str = Field(description="Source timestamp, ISO 8601 UTC")
    receive_time: str = Field(description="When the host received it, ISO 8601 UTC")
    online: bool


class HistorySampleOut(BaseModel):
    time: str
    ts_ms: int
    value: Any
    quality: int
    is_historical: bool


class HistoryBucketOut(BaseModel):
    start: str
    start_ms: int
    count: int
    min: float | None
    max: float | None
    avg: float | None
    last: Any


class HistoryOut(BaseModel):
    path: str
    start: str
    end: str
    bucket_ms: int | None
    samples: list[HistorySampleOut] | None = None
    buckets: list[HistoryBucketOut] | None = None
    truncated: bool = False


class DeviceOut(BaseModel):
    device_id: str
    online: bool
    last_birth: str | None
    last_death: str | None
    metric_count: int


class EdgeNodeOut(BaseModel):
    group_id: str
    edge_node_id: str
    online: bool
    bd_seq: int | None
    last_birth: str | None
    last_death: str | None
    last_seen: str | None
    metric_count: int
    devices: list[DeviceOut]
    counters: dict[str, int] = Field(
        description="malformed_payload, seq_gap, unknown_alias, before_birth, rebirth_requested..."
    )
    spool: dict[str, Any] = Field(description="What the edge reports about its spool")


class HealthOut(BaseModel):
    status: str = Field(description="ok when every component is ok, else degraded")
    version: str
    components: dict[str, dict[str, Any]]


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(max_length=64)
    # SecretStr: a validation error or a debug log of the model never shows the password.
    password: SecretStr = Field(max_length=1024)


class TokenOut(BaseModel):
    access_token: str
    token_type: str = Field("bearer", description="Send as `Authorization: Bearer <token>`")
    expires_at: str = Field(description="ISO 8601 UTC")
    role: str


class UserOut(BaseModel):
    username: str
    role: str = Field(description="operator, supervisor, engineer or admin")
    display_name: str
    disabled: bool
    created_at: str


class UserCreateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(max_length=64)
    password: SecretStr = Field(max_length=1024)
    role: str = Field(description="operator, supervisor, engineer or admin")
    display_name: str = Field("", max_length=200)
    comment: str = Field("", max_length=2000, description="Why; kept in the audit trail")


class UserPatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str | None = None
    disabled: bool | None = None
    password: SecretStr | None = Field(None, max_length=1024)
    comment: str = Field("", max_length=2000, description="Why; kept in the audit trail")


class AuditEntryOut(BaseModel):
    id: int
    at: str = Field(description="ISO 8601 UTC")
    username: str = Field(description="Who made the change")
    action: str
    entity: str
    entity_id: str
    before: Any
    after: Any
    comment: str
