"""The ``sessionStatus`` subscription over a real uvicorn server and a real NATS: a session's typed status
updates (progress and the cause of a failed start included), derived from its events on JetStream, ending
at a final status; and ``berth``'s ``follow_status`` on top of it."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest

from contracts import session as ss
from contracts.catalog import encode_event
from contracts.status import Reason, SessionStatus
from contracts.subjects import HEADER_POSITION, event_subject
from services.cli.output import Output
from services.cli.sessions_common import GONE, RUNNING_OR_DONE, follow_status
from services.sdk.client import BerthAPIError, BerthClient
from tests.support.publish import publish_from_store
from tests.support.gateway import (  # noqa: F401 - fixtures
    CREATE, TERMINATE, Keys, clean_streams, keys, read_models, served,
)
from tests.support.projections import Builder

STATUS = """subscription($id: String!) {
  sessionStatus(sessionId: $id) {
    sessionId status statusReason statusDetail pendingCode pendingReason position occurredAt } }"""
PULLING = "pulling berth/python:latest: 1/3 layers, 1.0 MB of 9.0 MB"
CAUSE = "image 'berth/python:latest' not found and could not be pulled: no such host"
NO_AGENT = "no agent in resource group 'default' has 1 cpu, 1 GiB mem free"


async def updates(client: BerthClient, ref: str, count: int | None = None) -> list[dict[str, Any]]:
    """Returns the subscription's updates (the first ``count``, else until it ends), failing after 15 s."""
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(15):
        async for data in client.subscribe(STATUS, {"id": ref}):
            got.append(data["sessionStatus"])
            if len(got) == count:
                break
    return got


async def fail_to_start(js: Any, session_id: str, position: int) -> int:
    """Publishes, after ``position``, the events of a session that waits for an agent, then fails to start while
    pulling; returns the last position."""
    build = Builder()
    events = [
        build(ss.SessionPendingReasonChanged, session_id, code="no-agent", message=NO_AGENT),
        build.scheduled(session_id, **{f"{session_id}-k0": "a1"}),
        build(ss.KernelPreparing, session_id, kernel_id=f"{session_id}-k0"),
        build.status(session_id, SessionStatus.PREPARING, Reason.KERNEL_PREPARING),
        build(ss.KernelProgressed, session_id, kernel_id=f"{session_id}-k0", detail=PULLING),
        build(ss.SessionStatusChanged, session_id, status=SessionStatus.ERROR, reason=Reason.FAILED_TO_START,
              detail=CAUSE),
    ]
    for event in events:
        position += 1
        await js.publish(event_subject(event.type_name(), event.originator_id), encode_event(event),
                         headers={HEADER_POSITION: str(position)})
    return position


async def test_status_updates_carry_progress_and_the_cause_then_end(served: str, keys: Keys, clean_streams,
                                                                   pg_dsn: str) -> None:
    async with BerthClient(served, *keys.alice) as alice:
        created = (await alice.execute(CREATE, {"input": {}}))["createSession"]
        session_id = created["sessionId"]
        published = await publish_from_store(clean_streams, pg_dsn, 0)
        first = await updates(alice, session_id, 1)
        assert first[0]["sessionId"] == session_id
        assert (first[0]["status"], first[0]["position"]) == ("PENDING", created["position"])

        live = asyncio.create_task(updates(alice, session_id))
        last = await fail_to_start(clean_streams, session_id, published)
        seen = await live
    assert [(u["status"], u["statusReason"], u["statusDetail"], u["pendingCode"], u["pendingReason"])
            for u in seen] == [
        ("PENDING", None, None, None, None),
        ("PENDING", None, None, "no-agent", NO_AGENT),
        ("SCHEDULED", "scheduled", None, None, None),
        ("PREPARING", "kernel-preparing", None, None, None),
        ("PREPARING", "kernel-preparing", PULLING, None, None),
        ("ERROR", "failed-to-start", CAUSE, None, None),
    ]
    assert seen[-1]["position"] == last  # and the stream ended after the final status


async def test_follow_status_shows_the_updates_and_stops_at_the_wanted_status(served: str, keys: Keys, clean_streams,
                                                                              pg_dsn: str) -> None:
    err = io.StringIO()
    out = Output(stderr=err)
    async with BerthClient(served, *keys.alice) as alice:
        created = (await alice.execute(CREATE, {"input": {}}))["createSession"]
        session_id = created["sessionId"]
        published = await publish_from_store(clean_streams, pg_dsn, 0)
        following = asyncio.create_task(follow_status(alice, out, session_id, RUNNING_OR_DONE, 15))
        await asyncio.sleep(0.2)
        last = await fail_to_start(clean_streams, session_id, published)
        status, position = await following
        assert (status, position) == ("ERROR", last)

        terminated = (await alice.execute(CREATE, {"input": {}}))["createSession"]["sessionId"]
        cancelled = (await alice.execute(TERMINATE, {"id": terminated}))["terminateSession"]
        await publish_from_store(clean_streams, pg_dsn, published)
        assert await follow_status(alice, out, terminated, GONE, 15) == ("CANCELLED", cancelled["position"])
    lines = [line.split(None, 1)[1] for line in err.getvalue().splitlines() if line.startswith("  ")]
    assert lines[:6] == ["PENDING", f"PENDING  {NO_AGENT}", "SCHEDULED", "PREPARING", f"PREPARING  {PULLING}",
                         f"ERROR  {CAUSE}"]
    assert lines[6:] == ["PENDING", "CANCELLED"]


async def test_status_of_a_session_not_yours_is_not_found(served: str, keys: Keys) -> None:
    async with BerthClient(served, *keys.alice) as alice, BerthClient(served, *keys.bob) as bob:
        session_id = (await alice.execute(CREATE, {"input": {}}))["createSession"]["sessionId"]
        with pytest.raises(BerthAPIError) as hidden:
            await updates(bob, session_id, 1)
    assert hidden.value.code == "NOT_FOUND"
