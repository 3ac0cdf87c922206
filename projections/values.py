"""Turns event values into SQL parameters the same way on every run (a rebuild gives identical rows)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

__all__ = ["iso", "json_text"]

_encoder = msgspec.json.Encoder(decimal_format="string")


def json_text(value: Any) -> str:
    """Returns the canonical JSON text of ``value`` (decimals as strings), for a ``jsonb`` column."""
    return _encoder.encode(value).decode()


def iso(timestamp: dt.datetime) -> str:
    """Returns ``timestamp`` as RFC 3339 text, as it appears in the event payload."""
    return _encoder.encode(timestamp).decode().strip('"')
