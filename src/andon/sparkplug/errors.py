"""Exceptions of the Sparkplug core: one per kind of bad input, all ``ValueError``."""

from __future__ import annotations

__all__ = ["PayloadError", "SessionError", "TopicError"]


class PayloadError(ValueError):
    """A payload (protobuf or STATE JSON) is malformed or a value does not match its datatype."""


class TopicError(ValueError):
    """A topic is outside the Sparkplug B namespace or breaks its rules."""


class SessionError(RuntimeError):
    """The caller used a session out of order (data before births, unknown device or metric)."""
