"""An interrupt reaches its run however busy the kernel's exec requests are, and whenever it comes.

Found in a hostile trial: an interrupt was refused while the kernel had 8 exec requests under way (the bound
that keeps a flood of new work from the agent), so a tenant's slow starts kept its own Ctrl-C, and the gateway's
clean-up of runs whose client left, from their runs; and an interrupt that came while its run was still starting
(reserved here, not yet sent to the runner) was answered "not running", after which the run ran to its end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from contracts.execution import ExecRequest
from services.agent import exec_server
from services.agent.exec_stream import RUN_LINE_LIMIT
from tests.support.exec_agent import FakeRunner, MuteRunner, ScriptedBackend, run, serving
from tests.support.exec_agent import real_runner as running_runner
from tests.support.waiting import async_wait_for

BIG = "#" * 1_000_000
"""A run's code that no socket buffer holds whole: its start waits on a runner that takes nothing."""


@pytest.fixture
def backend(tmp_path: Path) -> ScriptedBackend:
    return ScriptedBackend(tmp_path)


@pytest.fixture
async def fake(backend: ScriptedBackend) -> AsyncIterator[FakeRunner]:
    """Kernel k1's runner: a run sends nothing, an interrupt is answered ok and changes nothing."""
    runner = await FakeRunner(backend.runner_socket("k1")).start()
    yield runner
    await runner.close()


@pytest.fixture
def real_runner(backend: ScriptedBackend) -> Iterator[Path]:
    """Kernel k1's runner: the real one (berth_runner.py), its socket's path."""
    with running_runner(backend, "k1"):
        yield backend.runner_socket("k1")


@pytest.fixture
def run_connects(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Holds every run's start before it connects to its runner (a busy agent's) until the returned event is set;
    interrupts' connections go on."""
    gate = asyncio.Event()
    connect = exec_server.open_runner

    async def held(path: Path, limit: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if limit == RUN_LINE_LIMIT:  # a run's connection (an interrupt's reads a short answer)
            await gate.wait()
        return await connect(path, limit=limit)

    monkeypatch.setattr(exec_server, "open_runner", held)
    return gate


def interrupt(kernel_id: str, run_id: str, cancel: bool = False) -> ExecRequest:
    return ExecRequest(run_id=run_id, kernel_id=kernel_id, code="", interrupt=True, cancel=cancel)


def ops(runner: FakeRunner) -> list[str]:
    return [request["op"] for request in runner.requests]


async def test_an_interrupt_is_taken_while_the_kernels_exec_requests_are_at_their_bound(
    nats_url: str, backend: ScriptedBackend, fake: FakeRunner, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(exec_server, "KERNEL_DEADLINE", 120.0)  # the starts below stay under way
    monkeypatch.setattr(exec_server, "MAX_REQUESTS_PER_KERNEL", 2)
    async with serving(nats_url, backend) as served:
        streaming = run("k1")
        assert (await served.ask(streaming)).ok
        fake.stop_listening()  # k1's runner takes no new connection from now on: starts wait there
        mute = MuteRunner(backend.runner_socket("k1"))
        try:
            starting = [await served.send(run("k1", BIG)) for _ in range(2)]
            answer = await served.ask(interrupt("k1", streaming.run_id))
            assert (answer.ok, answer.error) == (True, None)
            await async_wait_for(lambda: ops(fake) == ["run", "interrupt"], timeout=10,
                                 message="the interrupt did not reach the run")
            cancel = await served.ask(interrupt("k1", streaming.run_id, cancel=True))
            assert (cancel.ok, cancel.error) == (True, None)
            await async_wait_for(lambda: fake.ended == 1, timeout=10, message="the run's stream was not ended")
            assert ops(fake) == ["run", "interrupt", "interrupt"]
            assert not any(request.answered() for request in starting), "the starts still hold the bound"
        finally:
            mute.close()


async def test_interrupts_of_runs_not_streaming_here_have_a_bound_of_their_own(
    nats_url: str, backend: ScriptedBackend, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Such an interrupt (a run started before the agent restarted) is asked of the runner in a task: a flood
    of them is refused past ``MAX_INTERRUPTS_PER_KERNEL``, and takes no place of the kernel's new work."""
    monkeypatch.setattr(exec_server, "KERNEL_DEADLINE", 120.0)
    monkeypatch.setattr(exec_server, "MAX_REQUESTS_PER_KERNEL", 1)
    monkeypatch.setattr(exec_server, "MAX_INTERRUPTS_PER_KERNEL", 1)
    mute = MuteRunner(backend.runner_socket("m1"))
    try:
        async with serving(nats_url, backend) as served:
            first = await served.send(interrupt("m1", "gone1"))
            start = await served.send(run("m1", BIG))
            second = await served.ask(interrupt("m1", "gone2"))
            assert not second.ok and second.error is not None
            assert "handling 1 interrupts for kernel m1 already (at most 1 at once per kernel)" in second.error
            assert not first.answered() and not start.answered(), "the first interrupt and the start wait on m1"
    finally:
        mute.close()


async def test_a_run_interrupted_while_it_starts_never_runs(
    nats_url: str, backend: ScriptedBackend, real_runner: Path, run_connects: asyncio.Event,
) -> None:
    await async_wait_for(real_runner.exists, timeout=30, message="the runner never listened")
    async with serving(nats_url, backend) as served:
        request = run("k1", "print('it ran')")
        output = await served.output("k1", request.run_id)
        starting = await served.send(request)
        answer = await served.ask(interrupt("k1", request.run_id))
        run_connects.set()
        assert (answer.ok, answer.error) == (True, None)
        assert (await starting.answer()).ok
        done = await output.until_done()
        assert (done.exit_code, output.text("stdout")) == (130, "")
        assert output.text() == "berth: interrupted before it started: the run did not run\n"
        await async_wait_for(lambda: served.server.busy_kernels() == [], timeout=10)


async def test_a_run_whose_client_left_while_it_started_is_never_sent_to_its_runner(
    nats_url: str, backend: ScriptedBackend, fake: FakeRunner, run_connects: asyncio.Event,
) -> None:
    async with serving(nats_url, backend) as served:
        request = run("k1")
        starting = await served.send(request)
        answer = await served.ask(interrupt("k1", request.run_id, cancel=True))
        run_connects.set()
        assert (answer.ok, answer.error) == (True, None)
        started = await starting.answer()
        assert (started.ok, started.error) == (False, f"run {request.run_id} was cancelled before it started: it "
                                                      "did not run")
        await async_wait_for(lambda: served.server.busy_kernels() == [], timeout=10)
        assert fake.requests == [], "the runner heard of the run"


async def test_an_interrupt_on_its_runs_connection_ends_the_run_and_its_answer_is_passed_over(
    nats_url: str, backend: ScriptedBackend, real_runner: Path,
) -> None:
    """The real runner answers an interrupt where it came: on the run's connection, amid the run's output."""
    await async_wait_for(real_runner.exists, timeout=30, message="the runner never listened")
    async with serving(nats_url, backend) as served:
        # one write (print writes its end apart: an interrupt between the two would cut the line, rightly)
        request = run("k1", "import sys, time\nsys.stdout.write('waiting\\n')\nsys.stdout.flush()\n"
                            "while True:\n    time.sleep(0.05)\n")
        output = await served.output("k1", request.run_id)
        assert (await served.ask(request)).ok
        assert await output.next() is not None  # it runs: the interrupt finds it there
        assert (await served.ask(interrupt("k1", request.run_id))).ok
        done = await output.until_done()
        assert (done.exit_code, output.text("stdout")) == (130, "waiting\n")
        assert "KeyboardInterrupt" in output.text() and "refuse" not in output.text()
