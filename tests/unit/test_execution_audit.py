"""The execution audit writes each run's record after ``done`` went out: ``submit`` does not wait
for the store, an unreachable store is waited out (the record written once it answers), a record
refused for good is not retried, and ``close`` writes what is queued or names what it could not."""

from __future__ import annotations

import asyncio
import logging

import pytest
from eventsourcing.persistence import OperationalError

from contracts.commands import RecordExecution
from domain.emitting import Context
from services.application.context import make_context
from services.gateway.execution_audit import ExecutionAudit
from tests.support.waiting import async_wait_for

CTX = make_context("ak-test")


def run(n: int) -> RecordExecution:
    return RecordExecution(run_id=f"run-{n}", kernel_id="k0", mode="query", exit_code=0, duration_ms=1,
                           code_digest="sha256:x")


class Store:
    """Records what it is given; fails as told first; ``gate`` holds every write until set."""

    def __init__(self, failures: list[BaseException] | None = None) -> None:
        self.failures = list(failures or [])
        self.written: list[str] = []
        self.attempts = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def record(self, session_id: str, command: RecordExecution, ctx: Context,
                     seen_version: int | None = None) -> None:
        self.attempts += 1
        await self.gate.wait()
        if self.failures:
            raise self.failures.pop(0)
        self.written.append(f"{session_id}/{command.run_id}")


async def test_submit_does_not_wait_for_the_store_and_close_writes_what_is_queued() -> None:
    store = Store()
    store.gate.clear()  # the store does not answer yet
    audit = ExecutionAudit(store.record)
    for n in range(3):
        await asyncio.wait_for(audit.submit("s1", run(n), CTX), 5)
    assert store.written == []
    store.gate.set()
    await audit.close()
    assert store.written == ["s1/run-0", "s1/run-1", "s1/run-2"] and audit.recorded == 3


async def test_an_unreachable_store_is_waited_out_and_each_record_written_once() -> None:
    store = Store([OperationalError("connection refused"), ConnectionError("reset"), OperationalError("again")])
    audit = ExecutionAudit(store.record, retry_delays=(0.01,))
    await audit.submit("s1", run(1), CTX)
    await audit.submit("s1", run(2), CTX)
    await async_wait_for(lambda: len(store.written) == 2, timeout=10, message=f"written {store.written}")
    assert store.written == ["s1/run-1", "s1/run-2"] and store.attempts == 5
    await audit.close()


async def test_a_record_refused_for_good_is_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    store = Store([KeyError("no session s9")])
    audit = ExecutionAudit(store.record, retry_delays=(0.01,))
    await audit.submit("s9", run(1), CTX)
    await audit.submit("s1", run(2), CTX)
    await audit.close()
    assert store.written == ["s1/run-2"] and store.attempts == 2
    assert "execution run-1 of session s9 cannot be recorded" in caplog.text


async def test_close_names_the_runs_it_could_not_record(caplog: pytest.LogCaptureFixture) -> None:
    store = Store()
    store.gate.clear()  # never answers
    audit = ExecutionAudit(store.record)
    await audit.submit("s1", run(1), CTX)
    await audit.submit("s1", run(2), CTX)
    with caplog.at_level(logging.ERROR):
        await audit.close(timeout=0.05)
    assert "execution run-1 of session s1 not recorded" in caplog.text
    assert "execution run-2 of session s1 not recorded" in caplog.text
