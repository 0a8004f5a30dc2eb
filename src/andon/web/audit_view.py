"""The audit history of one record as the pages show it: who, when, what changed, why.

The entries are the ones ``GET /api/v1/audit?entity=..&entity_id=..`` answers; a change is shown
as the fields whose value differs between before and after (times as the site's wall clock).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from andon.storage.audit import AuditEntry, AuditLog
from andon.web.mes_view import local_text

__all__ = ["HISTORY_LIMIT", "Change", "HistoryRow", "history_rows"]

#: Newest entries shown for one record.
HISTORY_LIMIT = 50


@dataclass(frozen=True, slots=True)
class Change:
    field: str
    before: str
    after: str


@dataclass(frozen=True, slots=True)
class HistoryRow:
    id: int
    at: str
    username: str
    action: str
    comment: str
    changes: list[Change]


def _show(key: str, value: Any, zone: ZoneInfo) -> str:
    if value is None:
        return "\u2013"
    if key.endswith("_ms") and isinstance(value, int) and value > 946_684_800_000:
        return local_text(value, zone, seconds=True)
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _changes(before: Any, after: Any, zone: ZoneInfo) -> list[Change]:
    if isinstance(before, dict) and isinstance(after, dict):
        keys = sorted(set(before) | set(after))
        return [
            Change(k, _show(k, before.get(k), zone), _show(k, after.get(k), zone))
            for k in keys
            if before.get(k) != after.get(k)
        ]
    if isinstance(after, dict) and before is None:
        return [Change(k, "\u2013", _show(k, v, zone)) for k, v in sorted(after.items())]
    if isinstance(before, dict) and after is None:
        return [Change(k, _show(k, v, zone), "\u2013") for k, v in sorted(before.items())]
    return [Change("value", _show("", before, zone), _show("", after, zone))]


def _row(entry: AuditEntry, zone: ZoneInfo) -> HistoryRow:
    return HistoryRow(
        entry.id,
        local_text(entry.at_ms, zone, seconds=True),
        entry.username,
        entry.action,
        entry.comment,
        _changes(entry.before, entry.after, zone),
    )


def history_rows(audit: AuditLog, entity: str, entity_id: str, zone: ZoneInfo) -> list[HistoryRow]:
    """Newest first."""
    entries = audit.list(entity=entity, entity_id=entity_id, limit=HISTORY_LIMIT)
    return [_row(e, zone) for e in entries]
