"""The one wait helper (services.common.waiting) and the application facade's thread hop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from services.application.facade import Facade
from services.common.waiting import first_of, until


async def test_first_of_returns_when_an_event_is_set() -> None:
    a, b = asyncio.Event(), asyncio.Event()
    asyncio.get_running_loop().call_later(0.01, b.set)
    await asyncio.wait_for(first_of(a, b), 1)
    assert b.is_set() and not a.is_set()


async def test_first_of_times_out_without_raising() -> None:
    await asyncio.wait_for(first_of(asyncio.Event(), timeout=0.01), 1)


async def test_first_of_never_cancels_a_task_it_was_given() -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(asyncio.sleep(10))
    asyncio.get_running_loop().call_later(0.01, stop.set)
    await first_of(task, stop)
    assert not task.done()
    task.cancel()


async def test_until_says_whether_the_event_won() -> None:
    event, stop = asyncio.Event(), asyncio.Event()
    event.set()
    assert await until(event, stop)
    stop.set()
    assert not await until(event, stop)


class _Opened:
    def __init__(self, value: int) -> None:
        self.value, self.closed_on = value, None

    def close(self) -> None:
        self.closed_on = threading.current_thread().name


async def test_the_facade_runs_calls_off_the_loop_and_closes_what_it_opened() -> None:
    facade = Facade("test-store", 2)
    opened = await facade.open(_Opened, 3)
    assert opened.value == 3
    name = await facade.call(lambda: threading.current_thread().name)
    assert name.startswith("test-store") and name != threading.current_thread().name
    assert await facade.call(pow, 2, exp=5) == 32
    await facade.close(wait=True)
    assert opened.closed_on is not None and opened.closed_on.startswith("test-store")
    with pytest.raises(RuntimeError):
        await facade.call(int)


def test_a_facade_needs_a_thread() -> None:
    with pytest.raises(ValueError):
        Facade("none", 0)
