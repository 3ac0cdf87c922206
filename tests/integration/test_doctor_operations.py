"""``doctor``'s operational checks on real PostgreSQL and NATS, with a gateway in process whose
stuck-session deadline is short: a session left SCHEDULED past it is reported stuck, and events
the relay never published are reported as relay lag (no relay runs); the read models are
brought up to date by the projections' runner, as the projector would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from contracts import commands as c
from domain import agent as agent_domain
from services.application.agents import Agents
from services.application.context import make_context
from services.application.sessions import Sessions
from services.common.settings import Settings
from services.gateway.main import build_app
from services.sdk.client import BerthClient
from tests.support.gateway import Keys, clean_streams, keys, read_models  # noqa: F401 - fixtures
from tests.support.placed import GIB, start_session
from tests.support.tenancy import catch_up
from tests.support.waiting import async_wait_for

AGENT = "a1"
DOCTOR = ("query { doctor { clean relayLag projectorLag checks { name subjects drifts } "
          "drifts { kind subject expected actual } } }")


@pytest.fixture
async def admin(read_models: str, nats_url: str, keys: Keys, clean_streams: Any) -> AsyncIterator[BerthClient]:
    settings = Settings(pg_dsn=read_models, nats_url=nats_url, stuck_scheduled_timeout=0.5)
    app = build_app(settings, read_wait=0.5)
    try:
        async with BerthClient("http://gateway.test", *keys.admin, transport=httpx.ASGITransport(app=app)) as client:
            yield client
    finally:
        await app.aclose()


async def test_a_stuck_session_and_an_unpublished_history_are_reported(
    admin: BerthClient, apps: tuple[Sessions, Agents], pg_dsn: str
) -> None:
    sessions, _ = apps
    await asyncio.to_thread(sessions.record, agent_domain.decide(None, c.RegisterAgent(
        capacity={"cpu": Decimal(8), "mem": 8 * GIB}, backend="simulated", hostname=AGENT), make_context("t"), AGENT))
    session_id = await asyncio.to_thread(start_session, sessions, "AKIA_STUCK", agent=AGENT)
    position = await asyncio.to_thread(catch_up, pg_dsn)

    async def stuck() -> dict[str, Any] | None:
        report = (await admin.execute(DOCTOR))["doctor"]
        return report if any(d["kind"] == "session-stuck" for d in report["drifts"]) else None

    report = await async_wait_for(stuck, timeout=15, message="the stuck session was not reported")
    drifts = {(d["kind"], d["subject"]): d for d in report["drifts"]}
    assert drifts[("session-stuck", f"session/{session_id}")]["expected"] == "out of SCHEDULED within 0.5 s"
    assert drifts[("relay-lag", "stream/EVENTS")]["actual"] == 0  # nothing was published: no relay runs
    assert drifts[("relay-lag", "stream/EVENTS")]["expected"] >= position
    assert report["clean"] is False and report["relayLag"] >= position and report["projectorLag"] == 0
    checks = {check["name"]: check for check in report["checks"]}
    assert checks["stuck"] == {"name": "stuck", "subjects": 1, "drifts": 1}
    assert checks["lag"]["drifts"] == 1 and checks["dead-letters"]["drifts"] == 0
