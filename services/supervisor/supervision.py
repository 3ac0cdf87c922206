"""Runs services as asyncio tasks; restarts one that crashes, with backoff; stops all on request."""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Sequence

__all__ = ["Service", "supervise"]

log = logging.getLogger(__name__)

Runner = Callable[[asyncio.Event], Awaitable[None]]


class Service:
    """A named service: ``run(stop)`` returns when ``stop`` is set."""

    def __init__(self, name: str, run: Runner) -> None:
        self.name = name
        self.run = run


async def _keep_running(service: Service, stop: asyncio.Event, max_backoff: float) -> None:
    backoff = 0.5
    while not stop.is_set():
        try:
            await service.run(stop)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a crashed service is logged and restarted
            log.exception("service %s crashed; restarting in %.1fs", service.name, backoff)
            try:
                await asyncio.wait_for(stop.wait(), timeout=backoff)
            except asyncio.TimeoutError:
                pass
            backoff = min(backoff * 2, max_backoff)
        else:
            if not stop.is_set():
                log.warning("service %s returned early; restarting", service.name)


async def supervise(services: Sequence[Service], stop: asyncio.Event, *, grace: float = 10.0, max_backoff: float = 10.0) -> None:
    """Runs every service until ``stop`` is set, then waits ``grace`` seconds for them to finish."""
    tasks = [asyncio.create_task(_keep_running(s, stop, max_backoff), name=s.name) for s in services]
    await stop.wait()
    done, pending = await asyncio.wait(tasks, timeout=grace)
    for task in pending:
        log.warning("service %s did not stop within %.0fs; cancelling", task.get_name(), grace)
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
