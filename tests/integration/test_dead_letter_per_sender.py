"""One hostile agent cannot make another agent's dead letters be lost, on a real NATS server with the controller and
a real gateway: its bad reports fill only its own share of the controller's dead letters
(``dlq.controller.<its id>``), and another agent's bad report is still dead-lettered, listed with the controller's
(``berth dlq ls --consumer controller``), counted by ``berth doctor`` under ``consumer/controller``. Letters an older
version wrote on ``dlq.controller`` stay listed with them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from contracts.subjects import DEADLETTER_STREAM, REPORTS_STREAM, dead_letter_subject, report_subject
from services.common.bus import DEADLETTER_MAX_PER_CONSUMER
from services.common.settings import Settings
from services.controller.flow import DURABLE
from services.controller.main import run_controller
from services.gateway.deadletters import queue
from tests.support.cli import as_json, berth
from tests.support.gateway import Keys, clean_streams, keys, read_models, served  # noqa: F401 - fixtures
from tests.support.hostile_agent import HOSTILE, PAYLOAD, fill, hostile_nc  # noqa: F401 - the fixture
from tests.support.publish import service_tasks
from tests.support.waiting import async_wait_for

OTHER = "a1"
KIND = "kernel_running"


@pytest.fixture
async def controller(js: JetStreamContext, served: str, nats_url: str, pg_dsn: str) -> AsyncIterator[None]:
    """The controller on the streams ``js`` emptied (started after, so its consumer is on them)."""
    settings = Settings(nats_url=nats_url, pg_dsn=pg_dsn, heartbeat_timeout=3600.0)
    async with service_tasks() as tasks:
        tasks.start("controller", lambda stop: run_controller(settings, stop))
        yield
        tasks.check()


async def _listed(served: str, keys: Keys, *args: str) -> dict[str, Any]:
    return await as_json(served, keys.admin, "dlq", "ls", "--consumer", "controller", *args)


async def _settled(js: JetStreamContext) -> bool:
    info = await js.consumer_info(REPORTS_STREAM, DURABLE)
    return info.num_pending == 0 and info.num_ack_pending == 0


async def _counts(js: JetStreamContext) -> dict[str, int]:
    return dict((await js.stream_info(DEADLETTER_STREAM, subjects_filter="dlq.>")).state.subjects or {})


async def test_a_hostile_agent_fills_only_its_own_share_of_the_controllers_dead_letters(
        js: JetStreamContext, hostile_nc: Client, controller: None, served: str, keys: Keys) -> None:
    await fill(js, dead_letter_subject("controller"), 2)  # as a version before per-sender subjects wrote them
    await fill(hostile_nc.jetstream(), report_subject(HOSTILE, KIND), DEADLETTER_MAX_PER_CONSUMER)  # undecodable

    await async_wait_for(lambda: _settled(js), timeout=120, message="the hostile reports were not all taken")
    await js.publish(report_subject(OTHER, KIND), b"not a report")
    await async_wait_for(lambda: _settled(js), timeout=60, message="the other agent's report was not taken")

    listed = await _listed(served, keys, "--limit", "1")
    assert listed["total"] == DEADLETTER_MAX_PER_CONSUMER + 3, f"dead letters lost: {await _counts(js)}"
    assert await _counts(js) == {dead_letter_subject("controller"): 2,
                                 dead_letter_subject("controller", HOSTILE): DEADLETTER_MAX_PER_CONSUMER,
                                 dead_letter_subject("controller", OTHER): 1}
    first = (await _listed(served, keys, "--limit", "3"))["entries"]
    assert [e["consumer"] for e in first] == ["controller"] * 3, "the older letters are listed with the new ones"
    assert first[2]["subject"] == report_subject(HOSTILE, KIND)
    other = (await _listed(served, keys, "--after", str(first[2]["seq"]), "--limit", "1000"))["entries"][-1]
    assert (other["consumer"], other["subject"]) == ("controller", report_subject(OTHER, KIND))
    status, out, _ = await berth(served, keys.admin, "doctor", ok=False)
    assert status == 1 and out.count("consumer/controller") == 1


async def test_a_consumers_entries_merge_its_subjects_oldest_first(js: JetStreamContext) -> None:
    legacy, mine = dead_letter_subject("controller"), dead_letter_subject("controller", OTHER)
    for subject in (mine, legacy, dead_letter_subject("projector"), mine, legacy):
        await js.publish(subject, PAYLOAD)
    letters = await queue.entries(js, "controller")
    assert [letter.seq for letter in letters] == [1, 2, 4, 5]
    assert [letter.seq for letter in await queue.entries(js, "controller", after=2, limit=1)] == [4]
    assert await queue.count(js, "controller") == 4 and await queue.count(js) == 5
