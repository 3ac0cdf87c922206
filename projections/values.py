"""Turns event values into SQL parameters the same way on every run (a rebuild gives identical rows)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from functools import reduce
from typing import Any, Iterable, Mapping

import msgspec

from contracts.slots import add_slots

__all__ = ["iso", "json_text", "total_slots"]

_encoder = msgspec.json.Encoder(decimal_format="string")


def json_text(value: Any) -> str:
    """Returns the canonical JSON text of ``value`` (decimals as strings), for a ``jsonb`` column."""
    return _encoder.encode(value).decode()


def iso(timestamp: dt.datetime) -> str:
    """Returns ``timestamp`` as RFC 3339 text, as it appears in the event payload."""
    return _encoder.encode(timestamp).decode().strip('"')


def total_slots(slots: Iterable[Mapping[str, Decimal]]) -> dict[str, Decimal]:
    """Returns the slot-wise sum of ``slots`` ({} when there are none)."""
    return reduce(add_slots, slots, {})
