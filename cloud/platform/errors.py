"""Domain errors live in :mod:`cloud.contracts.errors` (pure, importable by every domain); this
module keeps the platform's old import path."""

from __future__ import annotations

from cloud.contracts.errors import Conflict, DomainError, NotFound

__all__ = ["Conflict", "DomainError", "NotFound"]
