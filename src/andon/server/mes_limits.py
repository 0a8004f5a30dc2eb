"""The limits on how much one MES edit or query may cover, from the server's settings.

Each edit is one transaction and each query one answer built in memory, so their cost grows
with the period they cover; the limits keep one request from holding the database (and the MES
service) for minutes. They are settings (``mes_edit_max_days``, ``mes_edit_max_age_days``,
``mes_query_max_days``): a plant with other needs changes them there.
"""

from __future__ import annotations

from dataclasses import dataclass

from andon.settings import ServerSettings

__all__ = ["DAY_MS", "MesLimits"]

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class MesLimits:
    edit_max_days: float
    edit_max_age_days: float
    query_max_days: float

    @classmethod
    def of(cls, settings: ServerSettings) -> MesLimits:
        return cls(
            settings.mes_edit_max_days, settings.mes_edit_max_age_days, settings.mes_query_max_days
        )

    @classmethod
    def defaults(cls) -> MesLimits:
        """The settings' defaults (read from the settings' declaration, not repeated here)."""
        fields = ServerSettings.model_fields
        return cls(
            fields["mes_edit_max_days"].default,
            fields["mes_edit_max_age_days"].default,
            fields["mes_query_max_days"].default,
        )

    @property
    def edit_max_ms(self) -> int:
        return round(self.edit_max_days * DAY_MS)

    @property
    def edit_max_age_ms(self) -> int:
        return round(self.edit_max_age_days * DAY_MS)

    @property
    def query_max_ms(self) -> int:
        return round(self.query_max_days * DAY_MS)
