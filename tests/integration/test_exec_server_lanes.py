"""One kernel cannot hold up the agent's code execution: each request runs in its own bounded task, and every
wait on a kernel has a deadline (a tenant SIGSTOPped its runner and sent one 1 MB run: every later exec,
interrupt and probe on the agent timed out, for good)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from contracts.execution import ExecRequest
from services.agent import exec_server
from tests.support.exec_agent import FakeRunner, MuteRunner, ScriptedBackend, real_runner, run, serving
from tests.support.waiting import async_wait_for

BIG = "#" * 1_000_000
"""A run's code that no socket buffer holds whole."""


async def said_done(request: dict, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b'{"kind": "done", "exit_code": 0, "duration_ms": 1}\n')
    await writer.drain()


@pytest.fixture
def backend(tmp_path: Path) -> ScriptedBackend:
    return ScriptedBackend(tmp_path)


@pytest.fixture
async def healthy(backend: ScriptedBackend) -> AsyncIterator[FakeRunner]:
    runner = await FakeRunner(backend.runner_socket("healthy"), said_done).start()
    yield runner
    await runner.close()


@pytest.fixture
def stopped_runner(backend: ScriptedBackend) -> Iterator[subprocess.Popen]:
    """The real kernel runner of kernel ``stopped``, SIGSTOPped once it listens (what a query run's
    ``os.kill(os.getppid(), signal.SIGSTOP)`` does)."""
    with real_runner(backend, "stopped") as proc:
        yield proc


async def test_a_stopped_runner_holds_up_no_other_kernel(
    nats_url: str, backend: ScriptedBackend, healthy: FakeRunner, stopped_runner: subprocess.Popen,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(exec_server, "KERNEL_DEADLINE", 120.0, raising=False)  # the stopped run stays pending here
    await async_wait_for(backend.runner_socket("stopped").exists, timeout=30, message="the runner never listened")
    os.kill(stopped_runner.pid, signal.SIGSTOP)
    async with serving(nats_url, backend) as served:
        wedged = await served.send(run("stopped", BIG))
        assert (await served.ask(run("healthy", "print(1)"))).ok
        probe = await served.ask(ExecRequest(run_id="r1", kernel_id="healthy", code="", probe=True))
        assert (probe.ok, probe.error) == (False, "run r1 is not streaming here")
        interrupt = await served.ask(ExecRequest(run_id="r1", kernel_id="healthy", code="", interrupt=True))
        assert interrupt.ok  # the fake runner says it was running
        assert not wedged.answered(), "the stopped kernel's run waits on its own"


async def test_a_runner_that_takes_nothing_is_given_up_at_the_deadline_and_its_connection_closed(
    nats_url: str, backend: ScriptedBackend, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(exec_server, "KERNEL_DEADLINE", 0.5, raising=False)
    mute = MuteRunner(backend.runner_socket("mute"))
    try:
        async with serving(nats_url, backend) as served:
            accepted = await served.ask(run("mute", BIG))
            assert not accepted.ok
            assert accepted.error == "cannot reach the runner of kernel mute: it did not answer within 0.5 s"
            [held] = await mute.read_pending(1)  # ends: the agent closed its side
            assert held < len(BIG), "what the kernel did not take was dropped"
            assert served.server.busy_kernels() == []

            interrupt = await served.ask(ExecRequest(run_id="r1", kernel_id="mute", code="", interrupt=True))
            assert (interrupt.ok, interrupt.error) == (False, "cannot reach the runner: it did not answer within 0.5 s")
            await mute.read_pending(1)
    finally:
        mute.close()


async def test_requests_past_a_kernels_bound_or_the_agents_are_refused_at_once(
    nats_url: str, backend: ScriptedBackend, healthy: FakeRunner, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(exec_server, "KERNEL_DEADLINE", 120.0, raising=False)
    monkeypatch.setattr(exec_server, "MAX_REQUESTS_PER_KERNEL", 2, raising=False)
    monkeypatch.setattr(exec_server, "MAX_REQUESTS", 3, raising=False)
    mutes = [MuteRunner(backend.runner_socket(kernel)) for kernel in ("m1", "m2")]
    try:
        async with serving(nats_url, backend) as served:
            pending = [await served.send(run("m1", BIG)) for _ in range(2)]
            third = await served.ask(run("m1", "print(1)"))
            assert not third.ok and third.error is not None
            assert "handling 2 exec requests for kernel m1 already (at most 2 at once per kernel)" in third.error
            pending.append(await served.send(run("m2", BIG)))
            elsewhere = await served.ask(run("healthy", "print(1)"))
            assert not elsewhere.ok
            assert "handling 3 exec requests already (at most 3 at once)" in (elsewhere.error or "")
            assert not any(request.answered() for request in pending)
    finally:
        for mute in mutes:
            mute.close()

