"""``berth dlq`` and ``berth doctor`` as subprocesses against a real gateway, with the relay and
the controller running on real NATS and PostgreSQL. A report for a session not yet placed is
refused by the controller (a dead letter); listed, shown, replayed once the session exists (it is
then applied: the session runs) and gone from the queue; an event's dead letter is refused for
replay with the reason and dropped; users may do none of it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from contracts import commands as c
from contracts.envelope import utc_now
from contracts.reports import KernelRunningReport, encode_report
from contracts.status import SessionStatus
from contracts.subjects import report_subject
from domain import agent as agent_domain
from services.application.agents import Agents
from services.application.context import make_context
from services.application.sessions import Sessions
from services.common.bus import dead_letter
from services.common.settings import Settings
from services.controller.main import run_controller
from services.projector.main import run_projector
from services.relay.main import run_relay
from tests.support.cli import as_json, berth
from tests.support.gateway import Keys, clean_streams, keys, read_models, served  # noqa: F401 - fixtures
from tests.support.placed import GIB, has_status, start_session
from tests.support.publish import ServiceTasks, service_tasks
from tests.support.waiting import async_wait_for

AGENT = "a1"
OWNER = "AKIA_DLQ"


@pytest.fixture
async def pipeline(served: str, nats_url: str, pg_dsn: str) -> AsyncIterator[ServiceTasks]:
    settings = Settings(nats_url=nats_url, pg_dsn=pg_dsn, heartbeat_timeout=3600.0)  # no agent beats: never lost
    async with service_tasks() as tasks:
        tasks.start("relay", lambda stop: run_relay(settings, stop))
        tasks.start("projector", lambda stop: run_projector(settings, stop))
        tasks.start("controller", lambda stop: run_controller(settings, stop))
        yield tasks


async def dead_letters(served: str, keys: Keys, *args: str) -> dict[str, Any]:
    return await as_json(served, keys.admin, "dlq", "ls", *args)


async def test_a_poison_report_is_listed_shown_replayed_and_an_event_dropped(
    pipeline: ServiceTasks, served: str, keys: Keys, clean_streams: Any, apps: tuple[Sessions, Agents]
) -> None:
    js = clean_streams
    sessions, _ = apps
    ctx = make_context("test")
    await asyncio.to_thread(sessions.record, agent_domain.decide(None, c.RegisterAgent(
        capacity={"cpu": Decimal(8), "mem": 8 * GIB}, backend="simulated", hostname=AGENT), ctx, AGENT))
    session_id = "s-dlq-1"
    running = KernelRunningReport(agent_id=AGENT, observed_at=utc_now(), kernel_id=f"{session_id}-k",
                                  session_id=session_id, container_id="c1")
    await js.publish(report_subject(AGENT, running.type_name()), encode_report(running))  # no such session yet

    await async_wait_for(lambda: _total(served, keys, 1), timeout=30, message="the report was not dead-lettered")
    [entry] = (await dead_letters(served, keys))["entries"]
    assert (entry["consumer"], entry["subject"]) == ("controller", report_subject(AGENT, "kernel_running"))
    assert "not found" in entry["reason"]
    shown = await as_json(served, keys.admin, "dlq", "show", str(entry["seq"]))
    assert json.loads(shown["body"])["kernel_id"] == f"{session_id}-k" and shown["truncated"] is False
    status, out, _ = await berth(served, keys.admin, "doctor", ok=False)
    assert status == 1 and "consumer/controller" in out

    placed = await asyncio.to_thread(start_session, sessions, OWNER, agent=AGENT, session_id=session_id)
    assert placed == session_id
    replayed = await as_json(served, keys.admin, "dlq", "replay", str(entry["seq"]))
    assert replayed == {"done": [entry["seq"]], "refused": []}
    await async_wait_for(lambda: has_status(sessions, session_id, SessionStatus.RUNNING), timeout=30,
                         message="the replayed report was not applied")
    assert (await dead_letters(served, keys))["total"] == 0
    status, out, _ = await berth(served, keys.admin, "-o", "json", "dlq", "replay", str(entry["seq"]), ok=False)
    assert status == 1 and json.loads(out) == {"done": [], "refused": [{"seq": entry["seq"],
                                                                        "reason": "no such dead letter"}]}

    await dead_letter(js, f"agent-{AGENT}", f"ev.agent.{AGENT}.kernel_assigned", b"{}", "boom")
    [event_entry] = (await dead_letters(served, keys, "--consumer", f"agent-{AGENT}"))["entries"]
    status, out, _ = await berth(served, keys.admin, "dlq", "replay", "--consumer", f"agent-{AGENT}", ok=False)
    assert status == 1 and "is an event" in out
    assert (await dead_letters(served, keys))["total"] == 1
    dropped = await as_json(served, keys.admin, "dlq", "drop", "--all")
    assert dropped == {"done": [event_entry["seq"]], "refused": []}
    assert (await dead_letters(served, keys))["total"] == 0
    assert (await as_json(served, keys.admin, "doctor"))["deadLetters"] == 0
    pipeline.check()


async def _total(served: str, keys: Keys, expected: int) -> bool:
    return (await dead_letters(served, keys))["total"] == expected


@pytest.mark.parametrize("args", [["ls"], ["show", "1"], ["replay", "--all"], ["drop", "1"]])
async def test_dead_letters_are_for_superadmins_only(served: str, keys: Keys, args: list[str]) -> None:
    status, out, err = await berth(served, keys.alice, "dlq", *args, ok=False)
    assert status == 1 and "FORBIDDEN" in out + err


async def test_bad_input_is_refused_with_a_clear_error(served: str, keys: Keys) -> None:
    _, out, err = await berth(served, keys.admin, "dlq", "ls", "--consumer", "a.b", ok=False)
    assert "BAD_INPUT" in out + err
    _, out, err = await berth(served, keys.admin, "dlq", "replay", ok=False)
    assert "exactly one of SEQ, --consumer or --all" in out + err
    _, out, err = await berth(served, keys.admin, "dlq", "show", "0", ok=False)
    assert "BAD_INPUT" in out + err and "positive" in out + err
    _, out, err = await berth(served, keys.admin, "dlq", "ls", "--limit", "5000", ok=False)
    assert "5000" in out + err
