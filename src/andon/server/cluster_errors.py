"""What a cluster node answers to a write it may not make: another node leads the domain."""

from __future__ import annotations

from andon.domain import DomainError
from andon.server.tag_writes import TagWriteError

__all__ = ["NotLeaderError", "NotLeaderTagWriteError"]


class NotLeaderError(DomainError):
    """An MES edit for a domain another node leads (the message names it); the API: 409."""


class NotLeaderTagWriteError(TagWriteError):
    """A write to equipment whose edge another node commands now (the message names it): 409."""
