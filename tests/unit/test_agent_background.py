"""``until_consumed``: the agent ends when one of its background tasks fails (so that its supervisor
restarts it whole) instead of running on without its heartbeat, exit watch or reconciliation; a task
that returns, and the consumer's own end, are no failure."""

from __future__ import annotations

import asyncio

import pytest

from services.agent.main import BackgroundTaskFailed, until_consumed


async def forever() -> None:
    await asyncio.Event().wait()


async def fails() -> None:
    await asyncio.sleep(0)
    raise ConnectionResetError("the engine went away")


async def test_a_failed_background_task_ends_the_agent() -> None:
    consuming, heartbeat = asyncio.create_task(forever(), name="agent-consume"), asyncio.create_task(forever())
    watcher = asyncio.create_task(fails(), name="agent-exit-watch")
    with pytest.raises(BackgroundTaskFailed, match="agent-exit-watch failed: ConnectionResetError"):
        await asyncio.wait_for(until_consumed(consuming, [watcher, heartbeat]), 30)
    for task in (consuming, heartbeat):
        task.cancel()


async def test_a_returning_background_task_is_no_failure_and_the_consumers_end_is_awaited() -> None:
    release = asyncio.Event()

    async def consume() -> None:
        await release.wait()

    consuming = asyncio.create_task(consume())
    returned = asyncio.create_task(asyncio.sleep(0))
    waiting = asyncio.create_task(until_consumed(consuming, [returned]))
    await returned
    await asyncio.sleep(0)
    assert not waiting.done()
    release.set()
    await asyncio.wait_for(waiting, 30)


async def test_the_consumers_error_is_raised() -> None:
    consuming = asyncio.create_task(fails())
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(until_consumed(consuming, [asyncio.create_task(asyncio.sleep(0))]), 30)
