"""The one "wait for X or stop" helper of every service.

``first_of(*waits, timeout=...)`` returns as soon as one of ``waits`` is done (an
``asyncio.Event`` set, or a task/future finished) or ``timeout`` seconds have passed,
whichever comes first. It never raises for a timeout, never cancels a task it was given,
and cancels (and reaps) the waiters it made itself. The caller then looks at what it cares
about (``stop.is_set()``, ``task.done()``).

``until(event, stop)`` is the common case: True when ``event`` is set and ``stop`` is not.
"""

from __future__ import annotations

import asyncio

__all__ = ["first_of", "until"]


async def first_of(*waits: asyncio.Event | asyncio.Future, timeout: float | None = None) -> None:
    """Returns once any of ``waits`` is done, or after ``timeout`` seconds (None: no limit)."""
    own = [asyncio.ensure_future(w.wait()) for w in waits if isinstance(w, asyncio.Event)]
    given = [w for w in waits if not isinstance(w, asyncio.Event)]
    try:
        await asyncio.wait([*own, *given], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in own:
            waiter.cancel()
        await asyncio.gather(*own, return_exceptions=True)


async def until(event: asyncio.Event, stop: asyncio.Event) -> bool:
    """Waits for ``event`` or ``stop``; returns True when ``event`` is set and ``stop`` is not."""
    if not event.is_set() and not stop.is_set():
        await first_of(event, stop)
    return event.is_set() and not stop.is_set()
