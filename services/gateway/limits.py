"""The input limits of ``contracts.limits`` at the gateway: a command built from GraphQL input, or
a raw input value, that is over its limit is refused with BAD_INPUT naming the field and the
limit, before anything is loaded or recorded.

The arguments that never become a command field (what a query filters on, the key of what a
mutation loads first, a choice checked against its vocabulary) have their limits here; the README's
"Limits" table lists every argument's."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from contracts.limits import CHOICE, NAME, Limit, LimitError, Many, Text, check_limits, check_value
from services.gateway.errors import BAD_INPUT, GatewayError

__all__ = [
    "ACCESS_KEY", "AGGREGATE_ID", "ARGV", "CURSOR", "RUN_ID", "STATUSES", "checked", "checked_choice", "checked_name",
    "checked_value",
]

ACCESS_KEY = Text("accessKey", 64)
"""An access key named by an argument (``owner``, ``accessKey``); Berth's are 20 characters."""
AGGREGATE_ID = Text("aggregateId", 128)
CURSOR = Text("after", 256)
"""A page cursor (``endCursor``: a timestamp and a session id, base64)."""
RUN_ID = Text("runId", 32, pattern=re.compile(r"[0-9a-f]{32}"), shape="32 lowercase hex digits")
"""A run of ``execute`` (its items' ``runId``: a UUID's hex)."""
STATUSES = Many("status", 16, each=Text("status entry", CHOICE))
ARGV = Many("argv", 256, each=Text("argv entry", 32_768))
"""The ``sys.argv`` of an ``execute`` run (``berth run FILE ARGS...``)."""

C = TypeVar("C", bound=msgspec.Struct)


def checked(command: C) -> C:
    """Returns ``command`` when all its fields are within their limits; BAD_INPUT otherwise."""
    try:
        check_limits(command)
    except LimitError as exc:
        raise GatewayError(BAD_INPUT, str(exc)) from exc
    return command


def checked_name(field: str, value: str | None) -> None:
    """Returns when ``value`` (a domain, project, user, policy or group name; None: not given) is
    within the names' limit; BAD_INPUT naming ``field`` otherwise."""
    if value is not None:
        checked_value(NAME._replace(field=field), value)


def checked_choice(field: str, value: str) -> str:
    """Returns ``value`` (a choice from a closed vocabulary) when it is within the choices' limit,
    so that an error that names the choice never echoes a huge text; BAD_INPUT otherwise."""
    checked_value(Text(field, CHOICE), value)
    return value


def checked_value(limit: Limit, value: Any) -> None:
    """Returns when ``value`` is within ``limit``; BAD_INPUT otherwise."""
    try:
        check_value(limit, value)
    except LimitError as exc:
        raise GatewayError(BAD_INPUT, str(exc)) from exc
