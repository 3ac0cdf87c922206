"""The runs of one kernel share its output rate, on the real NATS with the agent's exec server: each run at its own
rate was not enough (16 runs a kernel, 128 an agent): 32 ``yes`` of one tenant in two sessions sent 32 MiB/s to
the gateway's one NATS connection, which nats-server cut as a slow consumer, failing every tenant's requests."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from contracts.execution import ExecChunk, ExecRequest
from services.agent import output_rate
from tests.integration.test_exec_server_output import LINE, flood
from tests.support.exec_agent import FakeRunner, ScriptedBackend, run, serving
from tests.support.waiting import async_wait_for

RUNS = 4
KERNEL_RATE = 256 << 10
KERNEL_BURST = 128 << 10


@pytest.fixture
def backend(tmp_path: Path) -> ScriptedBackend:
    return ScriptedBackend(tmp_path)


async def test_the_runs_of_a_kernel_are_read_no_faster_than_its_rate_together(
    nats_url: str, backend: ScriptedBackend, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each run may go at the kernel's rate alone; together they do too. However slow or fast the machine,
    ``burst + rate x elapsed`` bounds what went out of all of them (plus a line read last by each)."""
    monkeypatch.setattr(output_rate, "RATE", KERNEL_RATE)
    monkeypatch.setattr(output_rate, "BURST", KERNEL_BURST)
    monkeypatch.setattr(output_rate, "KERNEL_RATE", KERNEL_RATE)
    monkeypatch.setattr(output_rate, "KERNEL_BURST", KERNEL_BURST)
    runner = await FakeRunner(backend.runner_socket("k1"), flood).start()
    try:
        async with serving(nats_url, backend) as served:
            requests = [run("k1") for _ in range(RUNS)]
            outputs = [await served.output("k1", r.run_id) for r in requests]
            began = time.monotonic()
            for request in requests:
                assert (await served.ask(request)).ok
            target = KERNEL_BURST + 2 * KERNEL_RATE
            async with asyncio.timeout(60):
                while sum(o.data_chars for o in outputs) < target:
                    for output in outputs:  # the runs share the rate: each comes in turn
                        await output.next()
            elapsed = time.monotonic() - began
            sent = sum(o.data_chars for o in outputs)
            assert elapsed >= (sent - KERNEL_BURST - RUNS * (LINE + 100)) / KERNEL_RATE
            assert all(isinstance(item, ExecChunk) for o in outputs for item in o.items)
            for request in requests:
                await served.ask(ExecRequest(run_id=request.run_id, kernel_id="k1", code="", interrupt=True,
                                             cancel=True))
            await async_wait_for(lambda: runner.ended == RUNS, timeout=10)
    finally:
        await runner.close()

