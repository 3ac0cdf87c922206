"""Log requests run each in its own bounded task, under a deadline, and ask the backend for only the end they
can carry (they were read whole, on the agent's one serial lane for exec requests too)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from contracts.execution import LogsRequest
from services.agent import exec_server
from tests.support.exec_agent import ScriptedBackend, serving


@pytest.fixture
def backend(tmp_path: Path) -> ScriptedBackend:
    backend = ScriptedBackend(tmp_path)
    backend.stuck_logs["stuck"] = asyncio.Event()
    return backend


async def test_a_log_that_cannot_be_read_holds_up_no_other(
    nats_url: str, backend: ScriptedBackend, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(exec_server, "LOG_DEADLINE", 120.0, raising=False)
    async with serving(nats_url, backend) as served:
        stuck = await served.send(LogsRequest(kernel_id="stuck"))
        assert await served.logs("k2", tail=5) == "a log\n"
        assert backend.log_calls[-1] == ("k2", 5, served.nc.max_payload - 4096), "only the end that can be carried"
        assert not stuck.answered()
        backend.stuck_logs["stuck"].set()
        assert await stuck.raw() == b"a log\n"


async def test_log_requests_past_the_bound_are_refused_and_a_slow_one_ends_at_its_deadline(
    nats_url: str, backend: ScriptedBackend, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(exec_server, "LOG_DEADLINE", 120.0, raising=False)
    monkeypatch.setattr(exec_server, "MAX_LOG_REQUESTS_PER_KERNEL", 2, raising=False)
    async with serving(nats_url, backend) as served:
        pending = [await served.send(LogsRequest(kernel_id="stuck")) for _ in range(2)]
        assert await served.logs("stuck") == ("berth: the agent is handling 2 log requests for kernel stuck already "
                                              "(at most 2 at once per kernel): try again once they are answered")
        monkeypatch.setattr(exec_server, "LOG_DEADLINE", 0.5, raising=False)
        backend.stuck_logs["other"] = asyncio.Event()
        pending.append(await served.send(LogsRequest(kernel_id="other")))
        assert await pending[-1].raw() == b"berth: the log of kernel other could not be read within 0.5 s"
        backend.stuck_logs["stuck"].set()
        assert [await p.raw() for p in pending[:2]] == [b"a log\n"] * 2
