"""The input limits of ``contracts.limits`` at the gateway: a command built from GraphQL input, or
a raw input value, that is over its limit is refused with BAD_INPUT naming the field and the
limit, before anything is loaded or recorded."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from contracts.limits import Limit, LimitError, check_limits, check_value
from services.gateway.errors import BAD_INPUT, GatewayError

__all__ = ["checked", "checked_value"]

C = TypeVar("C", bound=msgspec.Struct)


def checked(command: C) -> C:
    """Returns ``command`` when all its fields are within their limits; BAD_INPUT otherwise."""
    try:
        check_limits(command)
    except LimitError as exc:
        raise GatewayError(BAD_INPUT, str(exc)) from exc
    return command


def checked_value(limit: Limit, value: Any) -> None:
    """Returns when ``value`` is within ``limit``; BAD_INPUT otherwise."""
    try:
        check_value(limit, value)
    except LimitError as exc:
        raise GatewayError(BAD_INPUT, str(exc)) from exc
