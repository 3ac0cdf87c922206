"""Domain errors: each names what was refused and why."""

from __future__ import annotations

__all__ = [
    "AlreadyExistsError",
    "DomainError",
    "ForbiddenError",
    "InsufficientCapacityError",
    "InvalidRequestError",
    "InvalidTransitionError",
    "NotFoundError",
]


class DomainError(Exception):
    """Base of all errors raised by decisions."""


class InvalidRequestError(DomainError):
    """Raised when a command's content is invalid."""


class NotFoundError(DomainError):
    """Raised when a command targets an aggregate that does not exist."""


class AlreadyExistsError(DomainError):
    """Raised when a command would create an aggregate that already exists."""


class InvalidTransitionError(DomainError):
    """Raised when a command is not allowed in the aggregate's current status."""


class InsufficientCapacityError(DomainError):
    """Raised when an agent cannot hold the requested slots."""


class ForbiddenError(DomainError):
    """Raised when the actor may see the aggregate but not do what the command asks."""
