"""What every audited MES edit shares: the services it needs, times checked against the clock,
the required comment, and DomainErrors turned into 4xx/503 answers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fastapi import HTTPException, Request

from andon.api.context import ApiContext
from andon.api.mes import _mes
from andon.api.timeparse import parse_instant_ms
from andon.domain import DomainError
from andon.domain.users import Role, User
from andon.server.mes_limits import DAY_MS
from andon.server.mes_queries import MesQueries
from andon.server.mes_service import EditOutOfReachError, MesUnavailableError
from andon.storage.audit import AuditEntry, AuditLog

__all__ = [
    "EARLIEST_MS",
    "FUTURE_SLACK_MS",
    "Edits",
    "conflicts_as_409",
    "edits",
    "last_audited_change",
    "need_role",
    "require_comment",
    "revert_note",
]

#: Edited times must lie between 2000-01-01 and the server's clock (plus clock skew slack).
EARLIEST_MS = 946_684_800_000
FUTURE_SLACK_MS = 60_000


@dataclass(frozen=True, slots=True)
class Edits:
    mes: MesQueries
    audit: AuditLog

    def instant(self, text: str, field: str) -> int:
        """A time from the body, in bounds; 422 otherwise."""
        try:
            value = parse_instant_ms(text)
        except ValueError as exc:
            raise HTTPException(422, f"{field}: {exc}") from exc
        now = self.mes.now_ms()
        if value < EARLIEST_MS or value > now + FUTURE_SLACK_MS:
            raise HTTPException(
                422, f"{field}: {text!r} is out of bounds (after 2000-01-01, not in the future)"
            )
        return value

    def period(self, start: str, end: str) -> tuple[int, int]:
        """[start, end) of an edit from the body: in bounds, end after start, and no longer
        than ``mes_edit_max_days``; 422 otherwise."""
        start_ms, end_ms = self.instant(start, "start"), self.instant(end, "end")
        if end_ms <= start_ms:
            raise HTTPException(422, "end must be after start")
        limits = self.mes.service.limits
        if end_ms - start_ms > limits.edit_max_ms:
            raise HTTPException(
                422,
                f"the period covers {(end_ms - start_ms) / DAY_MS:.1f} days; one edit covers at "
                f"most {limits.edit_max_days:g} days (setting mes_edit_max_days): split it",
            )
        return start_ms, end_ms


def edits(request: Request) -> Edits:
    ctx: ApiContext = request.app.state.context
    return Edits(_mes(request), ctx.users.audit)


def need_role(user: User, role: Role, what: str) -> None:
    if not user.role.allows(role):
        raise HTTPException(
            403, f"needs role {role.value} or higher to {what}; you are {user.role.value}"
        )


def require_comment(comment: str, what: str) -> str:
    text = comment.strip()
    if not text:
        raise HTTPException(422, f"comment: say why you {what} (kept in the audit trail)")
    return text


@contextmanager
def conflicts_as_409() -> Iterator[None]:
    """A rule the stored data refused (overlap, duplicate id, already ended): 409; the database
    not answering: 503. Input errors are checked before, as 404/422 (and an edit reaching
    further back than ``mes_edit_max_age_days``, found out by the service: 422)."""
    try:
        yield
    except MesUnavailableError as exc:
        raise HTTPException(503, str(exc)) from exc
    except EditOutOfReachError as exc:
        raise HTTPException(422, str(exc)) from exc
    except DomainError as exc:
        raise HTTPException(409, str(exc)) from exc


def last_audited_change(e: Edits, entity: str, entity_id: str, what: str) -> AuditEntry:
    """The newest audit entry of a record, which a revert undoes (404 when there is none)."""
    entries = e.audit.list(entity=entity, entity_id=entity_id, limit=1)
    if not entries:
        raise HTTPException(404, f"no audited change of {what} {entity_id!r}")
    return entries[0]


def revert_note(comment: str, last: AuditEntry) -> str:
    """The comment a revert's own audit entry carries: why, and which entry it undoes."""
    return f"{comment} (reverts audit entry {last.id}, {last.action})"
