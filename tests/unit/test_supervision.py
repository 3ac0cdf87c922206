"""supervise(): services stop on request within a bounded time, whatever they do."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from services.supervisor.supervision import Runner, Service, supervise
from tests.support.waiting import async_wait_for

GRACE = 0.3
CANCEL_GRACE = 0.3


async def _stopping(stop: asyncio.Event) -> None:
    await stop.wait()


def _tracked(services: list[Service], started: list[str]) -> list[Service]:
    def run(service: Service) -> Runner:
        async def tracked(stop: asyncio.Event) -> None:
            started.append(service.name)
            await service.run(stop)
        return tracked
    return [Service(s.name, run(s)) for s in services]


async def _run(services: list[Service], stop: asyncio.Event) -> tuple[list[str], float]:
    """Supervises ``services``, sets ``stop`` once each has started, returns (late, seconds to stop)."""
    running: list[str] = []
    supervisor = asyncio.create_task(supervise(_tracked(services, running), stop, grace=GRACE, cancel_grace=CANCEL_GRACE))
    await async_wait_for(lambda: len(running) == len(services), message="the services did not start")
    started = time.monotonic()
    stop.set()
    late = await asyncio.wait_for(supervisor, timeout=10)
    return late, time.monotonic() - started


async def test_services_that_stop_on_request_end_at_once() -> None:
    late, seconds = await _run([Service("a", _stopping), Service("b", _stopping)], asyncio.Event())
    assert late == []
    assert seconds < GRACE


async def test_a_service_ignoring_the_request_is_cancelled_after_the_grace_period(caplog: pytest.LogCaptureFixture) -> None:
    cancelled = asyncio.Event()

    async def deaf(stop: asyncio.Event) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with caplog.at_level(logging.WARNING):
        late, seconds = await _run([Service("deaf", deaf), Service("ok", _stopping)], asyncio.Event())
    assert late == ["deaf"]
    assert cancelled.is_set()
    assert GRACE <= seconds < GRACE + CANCEL_GRACE
    assert "service deaf did not stop within" in caplog.text


async def test_a_service_refusing_cancellation_is_left_behind_and_named(caplog: pytest.LogCaptureFixture) -> None:
    release = asyncio.Event()

    async def stubborn(stop: asyncio.Event) -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                pass

    with caplog.at_level(logging.WARNING):
        late, seconds = await _run([Service("stubborn", stubborn)], asyncio.Event())
    assert late == ["stubborn"]
    assert seconds >= GRACE + CANCEL_GRACE
    assert "service stubborn is still running" in caplog.text
    release.set()


async def test_a_service_blocked_in_a_thread_does_not_hold_the_stop(caplog: pytest.LogCaptureFixture) -> None:
    blocker = threading.Event()

    async def blocked(stop: asyncio.Event) -> None:
        await asyncio.to_thread(blocker.wait)  # a thread that ignores the stop request

    try:
        with caplog.at_level(logging.WARNING):
            late, seconds = await _run([Service("blocked", blocked)], asyncio.Event())
        assert late == ["blocked"]
        assert seconds < GRACE + CANCEL_GRACE
    finally:
        blocker.set()  # else the executor's thread would hold this test process at exit


async def test_a_crashed_service_is_restarted_until_the_stop() -> None:
    runs: list[int] = []
    second_run = asyncio.Event()

    async def flaky(stop: asyncio.Event) -> None:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("first run fails")
        second_run.set()
        await stop.wait()

    stop = asyncio.Event()
    supervisor = asyncio.create_task(supervise([Service("flaky", flaky)], stop, grace=GRACE, max_backoff=0.1))
    await asyncio.wait_for(second_run.wait(), timeout=10)
    stop.set()
    assert await asyncio.wait_for(supervisor, timeout=10) == []
    assert len(runs) == 2


async def test_cancelling_the_supervisor_stops_the_services_too() -> None:
    stopped = asyncio.Event()

    async def polite(stop: asyncio.Event) -> None:
        await stop.wait()
        stopped.set()

    stop, running = asyncio.Event(), []
    supervisor = asyncio.create_task(supervise(_tracked([Service("polite", polite)], running), stop, grace=GRACE))
    await async_wait_for(lambda: running, message="the service did not start")
    supervisor.cancel()
    with pytest.raises(asyncio.CancelledError):
        await supervisor
    assert stopped.is_set()
