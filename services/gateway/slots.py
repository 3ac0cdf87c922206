"""Resource slots in GraphQL, shared by sessions and tenancy: slot maps out, ``[{slot, amount}]`` in."""

from __future__ import annotations

from typing import Any, Mapping

import strawberry

__all__ = ["SlotInput", "slots_json"]


def slots_json(slots: Mapping[str, Any] | None) -> dict[str, str]:
    """Returns slots as a JSON object of decimal strings, sorted by name (mem in bytes)."""
    return {name: str(amount) for name, amount in sorted((slots or {}).items())}


@strawberry.input
class SlotInput:
    slot: str
    amount: str
