"""The error a gateway's refusal becomes on the client side."""

from __future__ import annotations

from typing import Any, NoReturn

__all__ = ["BerthAPIError", "raise_first"]


class BerthAPIError(Exception):
    """Raised when the gateway refuses a request; ``code`` is the GraphQL ``extensions.code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def raise_first(errors: list[dict[str, Any]], fallback: str = "GRAPHQL_ERROR") -> NoReturn:
    """Raises the ``BerthAPIError`` of the first GraphQL error of ``errors``."""
    first = errors[0] if errors else {}
    code = (first.get("extensions") or {}).get("code") or fallback
    raise BerthAPIError(str(code), str(first.get("message", "unknown error")))
