"""Turns what the server returns into display text that is printed literally.

Every string from the server (session names, images, reasons, event payloads, error messages) is
untrusted: it is never interpreted as markup (the renderers hand rich ``Text`` objects, never
markup strings), and :func:`escape_controls` replaces every character that could move the cursor,
recolour the terminal, break a line or reorder what follows (C0 and C1 controls, DEL, line and
paragraph separators, bidi overrides and isolates, lone surrogates) with a visible escape such
as ``\\x1b``, ``\\n`` or ``\\u202e``. :func:`cell` formats one value for a table or record:
``plain`` (stdout is not a terminal) gives the full value on one line without spaces of its own,
so columns split with ``awk``; otherwise a shorter form for people.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

__all__ = ["EMPTY", "UNLIMITED", "cell", "escape_controls"]

EMPTY = "-"
"""What an absent or empty value prints as, so every row has every column."""
UNLIMITED = "none"
"""What a limit that the API gives as 0 or empty (unlimited) prints as in a table."""

_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f"  # C0, DEL, C1 (CSI \x9b, NEL \x85, ...)
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidi marks, embeddings, overrides, isolates
    "\u2028\u2029"  # line and paragraph separators
    "\ud800-\udfff]"  # lone surrogates (cannot even be encoded)
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
_BINARY = ((1024**4, "TiB"), (1024**3, "GiB"), (1024**2, "MiB"), (1024, "KiB"))


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")


def escape_controls(text: str, keep_newlines: bool = False) -> str:
    """Returns ``text`` with every control, separator, bidi and surrogate character escaped
    (``\\x1b``, ``\\n``, ``\\u202e``); ``keep_newlines`` leaves ``\\n`` as is (messages, not cells)."""
    if keep_newlines:
        return "\n".join(_UNSAFE.sub(_escape, line) for line in text.split("\n"))
    return _UNSAFE.sub(_escape, text)


def _amount(slot: str, value: Any, plain: bool) -> str:
    """Returns a slot amount: memory in binary units (exact ones only when ``plain``), the rest as the
    number it is, without trailing zeros (two kernels of cpu=0.5 hold cpu=1, not 1.0)."""
    try:
        size = Decimal(str(value))
    except ArithmeticError:
        return str(value)
    if slot != "mem":
        return f"{size.normalize():f}" if size.is_finite() else str(value)
    for factor, unit in _BINARY:
        if size >= factor:
            if size % (factor // 1024 or 1) == 0:
                return f"{(size / factor).normalize():f}{unit}"
            return str(value) if plain else f"{size / factor:.1f}{unit}"
    return str(value) if plain else f"{size}B"


def _history(value: dict[str, Any], plain: bool) -> str:
    """Returns status → time pairs in time order: ``PENDING 10:00:01 → RUNNING 10:00:02``, or
    ``PENDING=<full time>,RUNNING=<full time>`` when ``plain``."""
    ordered = sorted(value.items(), key=lambda kv: str(kv[1]))
    if plain:
        return ",".join(f"{k}={v}" for k, v in ordered)
    return " → ".join(f"{k} {str(v)[11:19]}" for k, v in ordered)


def cell(key: str, value: Any, plain: bool = False) -> str:
    """Returns ``value`` (the field ``key`` of a row) as one line of escaped text; ``-`` when empty."""
    if value is None or value in ("", [], {}):
        return EMPTY
    if isinstance(value, dict) and key == "statusHistory":
        text = _history(value, plain)
    elif isinstance(value, dict):
        text = ("," if plain else " ").join(f"{k}={_amount(str(k), v, plain)}" for k, v in value.items())
    elif isinstance(value, list):
        text = ("," if plain else ", ").join(str(item) for item in value)
    else:
        text = str(value)
        if not plain and _ISO_TIME.match(text):
            text = text[:19].replace("T", " ")
    return escape_controls(text)
