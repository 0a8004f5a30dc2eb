"""The one exception the MES domain raises for invalid input or an impossible operation."""

from __future__ import annotations

__all__ = ["DomainError"]


class DomainError(ValueError):
    """Bad input or a forbidden operation; the message says what and why, for an API response."""
