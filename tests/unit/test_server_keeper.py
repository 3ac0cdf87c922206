"""``keep_servers`` with stand-in servers: an ended server is started again, a failing start is tried
again, a server that comes back elsewhere stops Berth, a running one is left alone."""

from __future__ import annotations

import asyncio

from services.supervisor.server_keeper import KeptServer, keep_servers
from tests.support.waiting import async_wait_for


class Server:
    """Ends when told; its restarts fail ``failures`` times first, then give ``address``."""

    def __init__(self, address: str, failures: int = 0) -> None:
        self.address = address
        self.failures = failures
        self.code: int | None = None
        self.restarts = 0
        self.pid: int | None = 100

    def exited(self) -> int | None:
        return self.code

    def restart(self) -> str:
        self.restarts += 1
        if self.failures:
            self.failures -= 1
            raise RuntimeError("shared memory still in use")
        self.code, self.pid = None, 100 + self.restarts
        return self.address


async def test_an_ended_server_is_started_again_and_a_failing_start_tried_again() -> None:
    flaky, steady = Server("pg", failures=2), Server("nats")
    kept = [KeptServer("postgresql", flaky, "pg"), KeptServer("nats-server", steady, "nats")]
    stop = asyncio.Event()
    keeping = asyncio.create_task(keep_servers(kept, stop, interval=0.01))
    try:
        flaky.code = -9
        await async_wait_for(lambda: flaky.code is None, timeout=10, message="not started again")
        assert flaky.restarts == 3 and flaky.pid == 103  # two failures, then up
        assert steady.restarts == 0 and not stop.is_set()
        flaky.code = 1  # ended again later: started again, the backoff back to its start
        await async_wait_for(lambda: flaky.code is None, timeout=10, message="not started again")
        assert flaky.restarts == 4
    finally:
        stop.set()
        await keeping


async def test_a_server_that_comes_back_at_another_address_stops_berth() -> None:
    moved = Server("postgresql://elsewhere")
    stop = asyncio.Event()
    moved.code = -9
    await asyncio.wait_for(keep_servers([KeptServer("postgresql", moved, "postgresql://here")], stop, interval=0.01), 10)
    assert stop.is_set() and moved.restarts == 1


async def test_nothing_is_started_once_berth_stops() -> None:
    ended = Server("nats")
    ended.code = 0
    stop = asyncio.Event()
    stop.set()
    await keep_servers([KeptServer("nats-server", ended, "nats")], stop, interval=0.01)
    assert ended.restarts == 0
