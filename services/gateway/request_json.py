"""Decodes the JSON of a request body or a websocket message, refusing what would fail later.

``json.loads`` raises RecursionError on arrays or objects nested a few thousand deep (a 500 and a
traceback over HTTP; a websocket handler crashed before authentication), and it lets lone UTF-16
surrogates through (``"\\ud800"``, or their UTF-8 bytes in a body: it decodes bytes with
``surrogatepass``), which fail as UnicodeEncodeError wherever the string is encoded (PostgreSQL, NATS, a
hash); a number of more than 4,300 digits raises ValueError. Each is refused here as ``RefusedJSONError``,
a JSONDecodeError: strawberry's websocket closes on it with 4400, the view answers it over HTTP with 400
BAD_INPUT.
"""

from __future__ import annotations

import json
import re

__all__ = ["RefusedJSONError", "decode_json", "refusal"]

NOT_JSON = "Unable to parse request body as JSON"
_SUSPECT = re.compile(r"[\ud800-\udfff]|\\u[dD][89a-fA-F]")
"""A surrogate, or what may be the JSON escape of one (``\\ud800``-``\\udfff``; maybe escaped itself, or one of
a valid pair): only then are the decoded strings checked one by one."""
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class RefusedJSONError(json.JSONDecodeError):
    """Raised when a JSON text is refused although it may be well-formed: nested too deep, not Unicode,
    holding a lone surrogate or a number of too many digits; ``msg`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, "", 0)


def decode_json(data: str | bytes) -> object:
    """Returns the value of a JSON text (bytes in UTF-8, or UTF-16/32 as ``json.loads`` detects them); raises
    ``RefusedJSONError`` when it is nested too deep, not in its encoding, holds a lone surrogate anywhere (keys
    included) or a number Python refuses to convert, JSONDecodeError when it is not JSON."""
    if isinstance(data, bytes):
        try:
            data = data.decode(json.detect_encoding(data))
        except UnicodeDecodeError as exc:
            raise RefusedJSONError(f"the JSON text is not valid Unicode ({exc.reason} at byte {exc.start})") from None
    try:
        value = json.loads(data)
    except RecursionError:
        raise RefusedJSONError("the JSON text is nested too deep") from None
    except json.JSONDecodeError:
        raise
    except ValueError as exc:  # a number of more than 4,300 digits (int's limit on conversions from text)
        raise RefusedJSONError(f"the JSON text cannot be decoded: {str(exc).split(';')[0][:200]}") from None
    if _SUSPECT.search(data) is not None and _holds_surrogate(value):
        raise RefusedJSONError("the JSON text holds a lone UTF-16 surrogate (\\ud800-\\udfff) in a string")
    return value


def refusal(error: json.JSONDecodeError) -> str:
    """Returns what a client is told about a request body that ``decode_json`` refused."""
    return error.msg if isinstance(error, RefusedJSONError) else NOT_JSON


def _holds_surrogate(value: object) -> bool:
    """Tells whether a string of the decoded ``value``, or a key of one of its objects, holds a surrogate (a
    walk with a stack of its own: the value may be nested as deep as ``json.loads`` went)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item) is not None:
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False
