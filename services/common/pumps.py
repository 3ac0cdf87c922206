"""Two directions of one connection carried at once (an app tunnel's pumps): the first to end ends both."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

__all__ = ["until_first_ends"]


async def until_first_ends(*pumps: Coroutine[Any, Any, None]) -> None:
    """Runs ``pumps`` until one of them returns or fails, then cancels the others and waits for them; what
    any raised is dropped (a connection's end, whichever way it came, ends the others)."""
    tasks = [asyncio.ensure_future(pump) for pump in pumps]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
