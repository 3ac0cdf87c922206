"""Group commit: concurrent calls saved together, so an API is not bound by one transaction per request.

Each save of the event store is one transaction that takes the event table's lock, notifies and
commits: with one per ``createSession``, concurrent clients queue behind each other's commits.
``GroupCommit.submit`` queues a call; one worker takes *every* call queued while the previous batch
was being saved (at most ``max_batch``) and hands them to ``save_many`` on the facade's threads —
one transaction for the lot. With one client there is no wait (the batch is that one call); under
load the batches grow by themselves. ``save_many`` returns one outcome per call, a result or the
exception that call raises, so one refused request never fails the others.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable, Generic, Sequence, TypeVar

from services.application.facade import Facade

__all__ = ["GroupCommit"]

log = logging.getLogger(__name__)

I = TypeVar("I")
R = TypeVar("R")


def _retrieve(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()


class GroupCommit(Generic[I, R]):
    """Batches concurrent ``submit`` calls into ``save_many`` calls run on ``facade``."""

    def __init__(self, facade: Facade, save_many: Callable[[list[I]], Sequence[R | Exception]], *,
                 max_batch: int = 100) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._facade = facade
        self._save_many = save_many
        self._max_batch = max_batch
        self._queue: asyncio.Queue[tuple[I, asyncio.Future[R]]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, item: I) -> R:
        """Returns the outcome of ``item`` once its batch is saved (or raises its error)."""
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name="group-commit")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)  # a cancelled caller's error is not "never retrieved"
        self._queue.put_nowait((item, future))
        return await asyncio.shield(future)  # a cancelled caller does not cancel the batch's save

    async def close(self) -> None:
        """Stops the worker; calls still queued fail with ``RuntimeError``."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        while not self._queue.empty():
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(RuntimeError("the service is stopping"))

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                outcomes: Sequence[R | Exception] = await self._facade.call(self._save_many, [item for item, _ in batch])
                if len(outcomes) != len(batch):
                    raise RuntimeError(f"save_many returned {len(outcomes)} outcomes for {len(batch)} calls")
            except asyncio.CancelledError:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(RuntimeError("the service is stopping"))
                raise
            except Exception as exc:  # noqa: BLE001 - every call of the batch gets the error
                log.exception("a group commit of %d call(s) failed", len(batch))
                outcomes = [exc] * len(batch)
            for (_, future), outcome in zip(batch, outcomes):
                if future.done():
                    continue
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
