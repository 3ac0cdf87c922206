"""Errors of the read models."""

from __future__ import annotations

__all__ = ["DuplicateRowError", "MissingRowError", "PositionMovedError"]


class MissingRowError(LookupError):
    """Raised when an event refers to a row that its earlier events should have created."""


class DuplicateRowError(LookupError):
    """Raised when a batch inserts a held row twice (as the table's primary key would refuse it)."""


class PositionMovedError(RuntimeError):
    """Raised when the stored position is not the one the caller resumes from (a rebuild or a
    second projector moved it); the caller re-reads the position and resumes from there."""

    def __init__(self, expected: int, found: int) -> None:
        super().__init__(f"projection position moved: expected stream_seq {expected}, found {found}")
        self.expected = expected
        self.found = found
