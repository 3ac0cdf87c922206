"""One session must never halt scheduling for everyone: an amount beyond the slots' bounds (as a history recorded
before them may hold) is planned and its pending reason told like any other, and a pass that cannot be planned at
all is retried while the scheduler goes on. On the in-memory event store, as ``test_scheduler_passes``."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import msgspec
import pytest

from contracts import commands as c
from contracts.envelope import Event
from contracts.session import KernelSpec, SessionSpec
from contracts.status import SessionStatus
from domain import session as session_domain
from services.application.context import make_context
from services.application.scheduling import Scheduling
from services.scheduler import passes
from tests.integration.test_scheduler_passes import (  # noqa: F401
    app, record_agent, record_session, runner_for, snapshot_of, status,
)
from tests.support.waiting import async_wait_for

HUGE = Decimal("1" + "0" * 50)
"""Bytes of memory: 51 digits (the gateway took 64 characters before the slots had bounds)."""


def _requested(session_id: str) -> Event:
    """A session asking for ``HUGE`` bytes of memory, as it was recorded before the bounds (today's domain refuses
    to decide it)."""
    spec = SessionSpec(name=session_id, image="python:3.11",
                       kernels=[KernelSpec(kernel_id=f"{session_id}-k0", slots={"cpu": Decimal(1), "mem": Decimal(1)})])
    [event] = session_domain.decide(None, c.RequestSession(owner="alice", spec=spec), make_context("test"), session_id)
    kernel = msgspec.structs.replace(event.spec.kernels[0], slots={"cpu": Decimal(1), "mem": HUGE})
    return msgspec.structs.replace(event, spec=msgspec.structs.replace(event.spec, kernels=[kernel]))


async def test_a_session_of_an_amount_beyond_the_bounds_is_told_why_and_the_others_are_placed(app: Scheduling) -> None:
    record_agent(app, "a1")
    app.record([_requested("huge")])
    record_session(app, "s1")
    decisions = await runner_for(app, snapshot_of(app)).run_pass()  # before: InvalidOperation, no pass at all
    assert decisions is not None and decisions.placed == ["s1"]
    reason = app.load("huge")[-1]
    assert reason.code == "too-large" and "PiB" in reason.message  # type: ignore[attr-defined]
    assert status(app, "huge") is SessionStatus.PENDING


async def test_a_pass_that_cannot_be_planned_is_retried_and_the_scheduler_goes_on(
    app: Scheduling, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_agent(app, "a1")
    record_session(app, "s1")
    failures = [RuntimeError("a bug in planning")]
    real_plan = passes.make_plan

    def plan(*args):  # type: ignore[no-untyped-def]
        if failures:
            raise failures.pop()
        return real_plan(*args)

    monkeypatch.setattr(passes, "make_plan", plan)
    runner = runner_for(app, snapshot_of(app))
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(runner.run(stop, ready))
    ready.set()
    try:  # before: the runner's task ended with the error, and nothing was ever placed again
        await async_wait_for(lambda: status(app, "s1") is SessionStatus.SCHEDULED or task.done(), timeout=10)
        assert not task.done(), task.exception() if task.done() else None
        assert status(app, "s1") is SessionStatus.SCHEDULED and not failures
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
