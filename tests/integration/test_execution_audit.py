"""The audit record of a code execution (``ExecutionFinished``) is never lost, never doubled, on real
PostgreSQL: the gateway's writer waits out a database outage (a TCP proxy the test closes), and a
retry after a save whose outcome was not known records nothing twice."""

from __future__ import annotations

import asyncio

import pytest

from contracts import commands as c
from services.application.agents import Agents
from services.application.context import make_context
from services.application.sessions import Sessions
from services.gateway.execution_audit import OUTAGE as AUDIT
from services.gateway.execution_audit import ExecutionAudit
from tests.integration.test_flow_outages import outage_tries
from tests.integration.test_report_batches import placed
from tests.support.tcp_proxy import tcp_proxy
from tests.support.waiting import async_wait_for


def execution(kernel_id: str, run_id: str = "run-1") -> c.RecordExecution:
    return c.RecordExecution(run_id=run_id, kernel_id=kernel_id, mode="query", exit_code=0, duration_ms=5,
                             code_digest="sha256:x")


def executions(sessions: Sessions, session_id: str) -> list[str]:
    return [e.run_id for e in sessions.load(session_id)  # type: ignore[attr-defined]
            if type(e).type_name() == "session.execution_finished"]


def test_a_retried_record_is_not_recorded_twice(apps: tuple[Sessions, Agents]) -> None:
    sessions, agents = apps
    kernel_id = placed(sessions, agents, "s1")
    seen = sessions.get("s1").version  # type: ignore[union-attr]
    ctx = make_context("AK")
    assert sessions.record_execution("s1", execution(kernel_id), ctx, seen_version=seen) is not None
    assert sessions.record_execution("s1", execution(kernel_id), ctx, seen_version=seen) is None
    assert sessions.record_execution("s1", execution(kernel_id, "run-2"), ctx, seen_version=seen) is not None
    assert executions(sessions, "s1") == ["run-1", "run-2"]


async def test_the_audit_record_waits_out_a_database_outage(pg_dsn: str, apps: tuple[Sessions, Agents],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    sessions, agents = apps
    kernel_id = await asyncio.to_thread(placed, sessions, agents, "s1")
    seen = sessions.get("s1").version  # type: ignore[union-attr]
    monkeypatch.setenv("POSTGRES_CONNECT_TIMEOUT", "1")  # a try fails in seconds, not minutes
    async with tcp_proxy(pg_dsn) as proxy:
        gateway_store = await asyncio.to_thread(Sessions, proxy.url(pg_dsn))
        try:
            await proxy.close()

            async def record(session_id: str, command: c.RecordExecution, ctx, seen_version: int | None) -> None:
                await asyncio.to_thread(gateway_store.record_execution, session_id, command, ctx,
                                        seen_version=seen_version)

            audit = ExecutionAudit(record, retry_delays=(0.2,))
            await audit.submit("s1", execution(kernel_id), make_context("AK"), seen_version=seen)
            await async_wait_for(lambda: outage_tries(AUDIT) >= 2, timeout=120, message="retried while away")
            assert audit.recorded == 0 and executions(sessions, "s1") == []
            await proxy.open()
            await audit.close(timeout=60)
            assert audit.recorded == 1
        finally:
            await asyncio.to_thread(gateway_store.close)
    assert executions(sessions, "s1") == ["run-1"]
    assert outage_tries(AUDIT) == 0
