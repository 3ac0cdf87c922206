"""Requests handled each in its own task, at most so many per kernel and so many in all.

nats-py runs the callbacks of one subscription one after another: a handler that awaits a kernel (its
runner's socket, Docker's log of it) holds up every later request on the agent's subject, whoever's kernel
it is for. The exec server's callbacks therefore only decode a request and start its work here; a kernel
that does not answer holds its own requests' slots (each until its deadline), never the others'. Past
either bound a request is refused at once, saying why.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["BoundedTasks"]

log = logging.getLogger(__name__)


class BoundedTasks:
    """Runs request handlers as tasks: at most ``per_kernel`` at once for one kernel and ``total`` in all."""

    def __init__(self, what: str, per_kernel: int, total: int) -> None:
        self._what = what
        self._per_kernel = per_kernel
        self._total = total
        self._count: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, kernel_id: str, work: Callable[[], Coroutine[Any, Any, None]], name: str) -> str | None:
        """Starts ``work()`` in a task of its own; returns None, or why not (a bound reached: nothing started)."""
        if len(self._tasks) >= self._total:
            return (f"the agent is handling {len(self._tasks)} {self._what} already (at most {self._total} at once): "
                    "try again once they are answered")
        if self._count[kernel_id] >= self._per_kernel:
            return (f"the agent is handling {self._count[kernel_id]} {self._what} for kernel {kernel_id} already "
                    f"(at most {self._per_kernel} at once per kernel): try again once they are answered")
        self._count[kernel_id] += 1
        task = asyncio.create_task(self._run(work), name=name)
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._finished(done, kernel_id))
        return None

    @staticmethod
    async def _run(work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        try:
            await work()
        except Exception:  # noqa: BLE001 - one request's fault is logged, never the agent's end
            log.exception("a request's handler failed")

    def _finished(self, task: asyncio.Task[None], kernel_id: str) -> None:
        self._tasks.discard(task)
        self._count[kernel_id] -= 1
        if self._count[kernel_id] <= 0:
            del self._count[kernel_id]

    def __len__(self) -> int:
        return len(self._tasks)

    async def close(self) -> None:
        """Cancels the handlers still running and waits for them."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
