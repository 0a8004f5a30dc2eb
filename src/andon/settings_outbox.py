"""The ``[outbox]`` and ``[enterprise]`` settings of the server: site -> enterprise forwarding.

Declared here, beside ``andon.settings`` (which uses them as ``ServerSettings.outbox`` and
``ServerSettings.enterprise``), to keep that module short. A source's broker is an
``MqttSettings``, which lives in ``andon.settings``; so the two classes naming it
(``EnterpriseSourceSettings``, ``EnterpriseSettings``) are completed there from the bases here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from andon.edge.sources.config import FieldError

__all__ = ["EnterpriseSettingsBase", "EnterpriseSourceBase", "OutboxSettings"]

_TOPIC_PREFIX = "andon/v1/outbox"


def _topic_level(value: str, what: str) -> str:
    if not value or any(c in value for c in "/+#"):
        raise ValueError(f"{what} must be one non-empty MQTT topic level (no '/', '+', '#')")
    return value


def _topic_prefix(value: str) -> str:
    if not value or any(c in value for c in "+#") or value.startswith("/") or value.endswith("/"):
        raise ValueError("topic_prefix must be a topic without wildcards or outer '/'")
    return value


class OutboxSettings(BaseModel):
    """``[outbox]``: every committed MES record change forwarded through the broker."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        False,
        description=(
            "Write every committed MES record change (state intervals, counts, runs, orders, "
            "count edits, added states, scheduled runs, rollup buckets) to the outbox in the "
            "same transaction, and publish it as JSON (QoS 1) on <topic_prefix>/<site>/<kind>; "
            "rows are deleted after the broker's PUBACK (needs plant_file)."
        ),
    )
    site: str = Field(
        "Site1",
        description=(
            "This site's name in the enterprise (one topic level, unique among the sites "
            "forwarding to one enterprise)."
        ),
    )
    topic_prefix: str = Field(_TOPIC_PREFIX, description="Topic prefix of the outbox feed.")
    batch_size: int = Field(
        500,
        gt=0,
        le=10_000,
        description=(
            "Outbox rows published per round; the round's rows are deleted once acknowledged."
        ),
    )

    @field_validator("site")
    @classmethod
    def _site(cls, value: str) -> str:
        return _topic_level(value, "site")

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return _topic_prefix(value)


class EnterpriseSourceBase(BaseModel):
    """One ``[[enterprise.sources]]`` entry (its broker: ``mqtt``, see ``andon.settings``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1,
        description=(
            "Names the source; the persistent MQTT session is andon-enterprise-<host_id>-<name>"
            ", so keep it stable (a new name starts a new session)."
        ),
    )
    sites: list[str] = Field(
        default_factory=lambda: ["+"],
        description='Sites to take from this broker ("+": every site).',
    )

    @field_validator("sites")
    @classmethod
    def _sites(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError('give at least one site ("+" for all)')
        return [v if v == "+" else _topic_level(v, "a site") for v in value]


class EnterpriseSettingsBase(BaseModel):
    """``[enterprise]``: this server keeps a copy of the sites' records (``sources``: see
    ``andon.settings.EnterpriseSettings``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        False,
        description=(
            "Consume the sites' outbox feeds and keep the newest version of every site record "
            "(GET /api/v1/enterprise/sites and /records)."
        ),
    )
    topic_prefix: str = Field(_TOPIC_PREFIX, description="Topic prefix of the sites' feeds.")
    batch_size: int = Field(
        500,
        gt=0,
        le=10_000,
        description="Most messages stored in one transaction (acknowledged after its commit).",
    )

    @model_validator(mode="after")
    def _unique_sources(self) -> Any:
        # ``sources`` is declared by the subclass in andon.settings; names make client ids.
        seen: set[str] = set()
        for index, source in enumerate(getattr(self, "sources", ())):
            if source.name in seen:
                raise FieldError(
                    ["sources", index, "name"], f"source {source.name!r} is named twice"
                )
            seen.add(source.name)
        return self

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return _topic_prefix(value)
