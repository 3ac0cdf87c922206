"""The runs streaming through an agent are bounded and ended from outside: capped per kernel and in all, ended at
once when their client is gone, ended (with a word to the client) when their interrupt did not end them, and
each holds at most a short line (100 abandoned runs held 100 tasks, 200 fds and 400 MiB in the agent)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from nats.aio.msg import Msg

from contracts.execution import ExecAccepted, ExecDone, ExecRequest, exec_subject
from services.agent import exec_runs
from services.common.bus import connect
from services.gateway.execution import run_end
from tests.support.exec_agent import FakeRunner, Output, ScriptedBackend, Served, run, serving
from tests.support.waiting import async_wait_for


@pytest.fixture
def backend(tmp_path: Path) -> ScriptedBackend:
    return ScriptedBackend(tmp_path)


@pytest.fixture
async def runners(backend: ScriptedBackend) -> AsyncIterator[dict[str, FakeRunner]]:
    """Silent runners (a run sends nothing; an interrupt changes nothing) of kernels k1, k2, k3."""
    started = {kernel: await FakeRunner(backend.runner_socket(kernel)).start() for kernel in ("k1", "k2", "k3")}
    yield started
    for runner in started.values():
        await runner.close()


def interrupt(kernel_id: str, run_id: str, cancel: bool = False) -> ExecRequest:
    return ExecRequest(run_id=run_id, kernel_id=kernel_id, code="", interrupt=True, cancel=cancel)


async def test_runs_past_a_kernels_cap_or_the_agents_are_refused(
    nats_url: str, backend: ScriptedBackend, runners: dict[str, FakeRunner], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(exec_runs, "MAX_RUNS_PER_KERNEL", 2)
    monkeypatch.setattr(exec_runs, "MAX_RUNS", 3)
    async with serving(nats_url, backend) as served:
        first, second = run("k1"), run("k1")
        assert (await served.ask(first)).ok and (await served.ask(second)).ok
        third = await served.ask(run("k1"))
        assert (third.ok, third.error) == (False, "kernel k1 has 2 runs streaming already (at most 2 at once): try "
                                                  "again once one ended")
        assert (await served.ask(run("k2"))).ok
        fourth = await served.ask(run("k3"))
        assert (fourth.ok, fourth.error) == (False, "the agent streams 3 runs already (at most 3 at once): try again "
                                                    "once one ended")

        await served.ask(interrupt("k1", first.run_id, cancel=True))  # its client left: its place is free again

        async def accepted() -> bool:
            return (await served.ask(run("k1"))).ok

        await async_wait_for(accepted, timeout=10, message="the ended run's place was not freed")


async def test_a_run_whose_client_is_gone_is_ended_at_once(
    nats_url: str, backend: ScriptedBackend, runners: dict[str, FakeRunner],
) -> None:
    """The gateway says ``cancel`` with the interrupt of a run whose client left; the run ignores interrupts."""
    async with serving(nats_url, backend) as served:
        request = run("k1")
        assert (await served.ask(request)).ok
        assert served.server.busy_kernels() == ["k1"]
        assert (await served.ask(interrupt("k1", request.run_id, cancel=True))).ok
        await async_wait_for(lambda: runners["k1"].ended == 1, timeout=10, message="the run's stream was not ended")
        await async_wait_for(lambda: served.server.busy_kernels() == [], timeout=10)
        assert [r["op"] for r in runners["k1"].requests] == ["run", "interrupt"], "the run was interrupted too"


async def test_a_run_still_going_after_its_interrupt_is_ended_with_a_word_to_its_client(
    nats_url: str, backend: ScriptedBackend, runners: dict[str, FakeRunner], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(exec_runs, "INTERRUPT_GRACE", 0.5)
    async with serving(nats_url, backend) as served:
        request = run("k1")
        output = await served.output("k1", request.run_id)
        assert (await served.ask(request)).ok
        assert (await served.ask(interrupt("k1", request.run_id))).ok
        done = await output.until_done()
        assert done.exit_code == 1
        assert output.text() == ("berth: the run was still going 0.5 s after its interrupt: the agent stopped "
                                 "streaming it (it may still run in the kernel)\n")
        await async_wait_for(lambda: runners["k1"].ended == 1, timeout=10, message="the runner connection stayed")
        await async_wait_for(lambda: served.server.busy_kernels() == [], timeout=10)


async def unended_line(request: dict, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b'{"kind": "stdout", "data": "' + b"x" * (200 << 10))  # no end, no newline: then silence
    await writer.drain()


async def test_a_run_holds_at_most_a_short_line_of_its_runner(nats_url: str, backend: ScriptedBackend) -> None:
    runner = await FakeRunner(backend.runner_socket("long"), unended_line).start()
    try:
        async with serving(nats_url, backend) as served:
            output = await _started(served, run("long"))
            done = await output.until_done()
            assert done.exit_code == 1 and isinstance(done, ExecDone)
            assert "a line longer than 128 KiB" in output.text()
            await async_wait_for(lambda: runner.ended == 1, timeout=10)
    finally:
        await runner.close()


async def _started(served: Served, request: ExecRequest) -> Output:
    output = await served.output(request.kernel_id, request.run_id)
    assert (await served.ask(request)).ok
    return output


async def test_the_gateway_says_cancel_with_the_interrupt_of_a_run_whose_client_left(
    nats_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """... and asks again while the agent cannot take it now (its bound of requests at once was full: the run went
    on in the kernel), not when it says the run is not running."""
    monkeypatch.setattr(run_end, "RETRY_PAUSE", 0.01)
    nc = await connect(nats_url, "test-gateway")
    try:
        asked: list[ExecRequest] = []
        answers = [ExecAccepted(ok=False, error="the agent is handling 8 exec requests for kernel k1 already (at "
                                                "most 8 at once per kernel): try again once they are answered"),
                   ExecAccepted(ok=True), ExecAccepted(ok=False, error="run r2 is not running")]

        async def agent(msg: Msg) -> None:
            asked.append(msgspec.json.decode(msg.data, type=ExecRequest))
            await msg.respond(msgspec.json.encode(answers.pop(0)))

        await nc.subscribe(exec_subject("a-cancel"), cb=agent)
        await run_end._interrupt(nc, "a-cancel", "k1", "r1")
        assert [(r.run_id, r.interrupt, r.cancel) for r in asked] == [("r1", True, True)] * 2
        await run_end._interrupt(nc, "a-cancel", "k1", "r2")
        assert [r.run_id for r in asked] == ["r1", "r1", "r2"] and answers == []
    finally:
        await nc.close()
