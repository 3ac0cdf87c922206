"""Messages carried out in lanes: those of one lane one after the other, in the order they came; the
lanes at the same time, at most ``limit`` messages held at once.

The pull loop hands each fetch to ``Lanes.accept``, which returns as soon as fewer than ``limit``
messages are held (queued or being handled), so the next fetch never waits for a slow message of
another lane: a kernel whose image takes minutes to pull holds back only its own kernel's events,
not the next session's start on the same agent. Every held message that is not yet being handled
has its ack deadline pushed back every ``KEEP_ALIVE`` seconds (the one being handled has it from
``Settler``), so the server never redelivers a message still queued here (which would carry it out
twice, and out of its lane's order). ``close`` cancels what is still held: unsettled, it is
redelivered after the ack deadline, as on any stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable

from typing import Any

from nats.aio.msg import Msg

from contracts.catalog import decode_event
from services.common.settler import KEEP_ALIVE, in_progress

__all__ = ["Lanes", "event_lane"]

log = logging.getLogger(__name__)


def event_lane(key: Callable[[Any], Hashable]) -> Callable[[Msg], Hashable]:
    """Returns the lane of a message by ``key`` of its decoded event; a message that does not decode
    (or has no key) is a lane of its own (its handler's attempt says why it fails)."""

    def lane_of(msg: Msg) -> Hashable:
        try:
            return ("key", key(decode_event(msg.data)))
        except Exception:  # noqa: BLE001 - undecodable or keyless: alone
            return ("alone", id(msg))

    return lane_of


class Lanes:
    """Runs ``run_one(message)`` for each accepted message, in lanes by ``lane_of(message)``."""

    def __init__(self, limit: int, lane_of: Callable[[Msg], Hashable], run_one: Callable[[Msg], Awaitable[None]],
                 *, keep_alive: float = KEEP_ALIVE) -> None:
        if limit < 1:
            raise ValueError(f"a limit of at least 1, got {limit}")
        self._limit, self._lane_of, self._run_one, self._keep_alive = limit, lane_of, run_one, keep_alive
        self._lanes: dict[Hashable, deque[Msg]] = {}
        self._held = 0
        self._room = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()
        self._keeper: asyncio.Task[None] | None = None

    @property
    def held(self) -> int:
        """Messages accepted and not yet carried out (queued or being handled)."""
        return self._held

    async def accept(self, messages: list[Msg]) -> None:
        """Queues ``messages`` on their lanes (each starts at once where its lane is idle); returns
        once fewer than ``limit`` messages are held."""
        for msg in messages:
            lane = self._lane_of(msg)
            self._held += 1
            queue = self._lanes.get(lane)
            if queue is not None:
                queue.append(msg)
                continue
            self._lanes[lane] = deque([msg])
            self._spawn(self._run_lane(lane))
        if self._keeper is None:
            self._keeper = asyncio.create_task(self._keep_queued_alive())
        async with self._room:
            await self._room.wait_for(lambda: self._held < self._limit)

    async def close(self) -> None:
        """Cancels every lane and waits for them to end; what they held stays unsettled."""
        tasks = [*self._tasks, *([self._keeper] if self._keeper else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._keeper = None

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_lane(self, lane: Hashable) -> None:
        queue = self._lanes[lane]
        try:
            while queue:
                try:
                    await self._run_one(queue[0])  # settles it, whatever the handler did (Settler)
                except Exception:  # settling failed (NATS away): unsettled, the server delivers it again
                    log.exception("could not settle %s; it will be delivered again", queue[0].subject)
                queue.popleft()
                await self._released()
        finally:
            if self._lanes.get(lane) is queue:
                del self._lanes[lane]

    async def _released(self) -> None:
        self._held -= 1
        async with self._room:
            self._room.notify_all()

    async def _keep_queued_alive(self) -> None:
        """Pushes back the ack deadline of every message queued behind its lane's first, forever."""
        while True:
            await asyncio.sleep(self._keep_alive)
            for queue in list(self._lanes.values()):
                for msg in list(queue)[1:]:
                    await in_progress(msg)
