"""GraphQL errors with a machine-readable ``extensions.code``, and the mapping from domain errors."""

from __future__ import annotations

from typing import Any

from contracts.slots import SlotError
from contracts.subjects import SubjectError
from domain.errors import (
    AlreadyExistsError,
    DomainError,
    ForbiddenError,
    InsufficientCapacityError,
    InvalidRequestError,
    InvalidTransitionError,
    NotFoundError,
)
from domain.tenancy.enqueue import QuotaExceededError

__all__ = [
    "AMBIGUOUS",
    "BAD_INPUT",
    "CONFLICT",
    "FORBIDDEN",
    "GatewayError",
    "INTERNAL",
    "NOT_FOUND",
    "QUOTA",
    "RATE_LIMITED",
    "READ_MODEL_BEHIND",
    "SUBSCRIPTION_LIMIT",
    "UNAUTHENTICATED",
    "UNAVAILABLE",
    "from_domain",
]

BAD_INPUT = "BAD_INPUT"
NOT_FOUND = "NOT_FOUND"
CONFLICT = "CONFLICT"
FORBIDDEN = "FORBIDDEN"
UNAUTHENTICATED = "UNAUTHENTICATED"
READ_MODEL_BEHIND = "READ_MODEL_BEHIND"
UNAVAILABLE = "UNAVAILABLE"
INTERNAL = "INTERNAL"
QUOTA = "QUOTA"
RATE_LIMITED = "RATE_LIMITED"
"""The keypair made more requests than its policy's ``rate_limit`` allows per 15 minutes (HTTP 429, Retry-After)."""
SUBSCRIPTION_LIMIT = "SUBSCRIPTION_LIMIT"
"""The keypair has its policy's ``max_concurrent_subscriptions`` open already."""
AMBIGUOUS = "AMBIGUOUS"
"""A session reference (id prefix or name) that matches several sessions; the message lists them."""

_BY_DOMAIN: tuple[tuple[type[Exception], str], ...] = (
    (InvalidRequestError, BAD_INPUT),
    (SlotError, BAD_INPUT),
    (SubjectError, BAD_INPUT),
    (NotFoundError, NOT_FOUND),
    (ForbiddenError, FORBIDDEN),
    (AlreadyExistsError, CONFLICT),
    (InvalidTransitionError, CONFLICT),
    (InsufficientCapacityError, CONFLICT),
    (QuotaExceededError, QUOTA),
)


class GatewayError(Exception):
    """Raised by resolvers for an error the caller can act on; its code goes to ``extensions.code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def extensions(self) -> dict[str, Any]:
        """Returns the GraphQL error extensions (graphql-core copies them into the error)."""
        return {"code": self.code}


def from_domain(exc: Exception) -> GatewayError:
    """Returns the GraphQL error for a domain or validation error; re-raises anything else."""
    for cls, code in _BY_DOMAIN:
        if isinstance(exc, cls):
            return GatewayError(code, str(exc))
    if isinstance(exc, DomainError):
        return GatewayError(BAD_INPUT, str(exc))
    raise exc
