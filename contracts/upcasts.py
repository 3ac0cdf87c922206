"""Upcasters: events as older history stored them, brought to their current shape.

An event type whose fields moved keeps its stable type name (its subjects and consumers stay
as they are); stored history keeps its old bytes. ``contracts.catalog.decode_event`` decodes
the current shape first and calls ``upcast`` only when that fails, so an event of the current
shape is decoded once and pays nothing for its past.

Each upcaster maps the JSON object of an old shape to the object of the current one, or returns
None when the object is not of its old shape (then the decode error stands).
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["UPCASTERS", "upcast"]

Upcaster = Callable[[dict[str, Any]], dict[str, Any] | None]

_ENVELOPE = frozenset({"type", "event_id", "originator_id", "originator_version", "timestamp", "metadata"})


def _session_requested_flat(obj: dict[str, Any]) -> dict[str, Any] | None:
    """``session.requested`` before ``SessionSpec``: the spec's fields flat beside ``owner``.
    Every field that is neither the envelope nor ``owner`` belongs to the spec."""
    if "spec" in obj:
        return None
    outside = _ENVELOPE | {"owner"}
    return {
        **{key: value for key, value in obj.items() if key in outside},
        "spec": {key: value for key, value in obj.items() if key not in outside},
    }


UPCASTERS: dict[str, Upcaster] = {
    "session.requested": _session_requested_flat,
}
"""Type name -> the upcaster of its older shape."""


def upcast(obj: Any) -> dict[str, Any] | None:
    """Returns the current shape of a decoded JSON event object of an older shape, None when it
    is of no known older shape."""
    if not isinstance(obj, dict):
        return None
    upcaster = UPCASTERS.get(obj.get("type"))  # type: ignore[arg-type]
    return upcaster(obj) if upcaster is not None else None
