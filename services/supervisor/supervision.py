"""Runs services as asyncio tasks; restarts one that crashes, with backoff; stops all on request,
within a bounded time: ``grace`` seconds to finish, then cancellation, then ``cancel_grace``
seconds more; a service still running after that is named in the log and left behind (the caller
decides how to end the process, see ``services.supervisor.stopping``)."""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Sequence
from services.common.waiting import first_of

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
            await first_of(stop, timeout=backoff)
            backoff = min(backoff * 2, max_backoff)
        else:
            if not stop.is_set():
                log.warning("service %s returned early; restarting", service.name)


async def supervise(services: Sequence[Service], stop: asyncio.Event, *, grace: float = 10.0,
                    cancel_grace: float = 5.0, max_backoff: float = 10.0) -> list[str]:
    """Runs every service until ``stop`` is set, then waits ``grace`` seconds for them to finish,
    cancels those still running and waits ``cancel_grace`` seconds more. Returns the names of the
    services that did not finish within ``grace`` (each is logged), empty when all stopped in time.

    A cancelled service may leave a thread behind (``asyncio.to_thread`` cannot interrupt its
    thread): the caller must not wait for the executor's threads without a deadline."""
    tasks = [asyncio.create_task(_keep_running(s, stop, max_backoff), name=s.name) for s in services]
    try:
        await stop.wait()
    finally:
        stop.set()  # also when supervise itself is cancelled
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            log.warning("service %s did not stop within %.0fs of the stop request; cancelling it",
                        task.get_name(), grace)
            task.cancel()
        if pending:
            _, stuck = await asyncio.wait(pending, timeout=cancel_grace)
            for task in stuck:
                log.error("service %s is still running %.0fs after being cancelled; leaving it behind",
                          task.get_name(), cancel_grace)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("service %s ended with an error", task.get_name(), exc_info=task.exception())
    return [task.get_name() for task in pending]
