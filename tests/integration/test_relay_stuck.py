"""An event NATS refuses for good stops the relay loudly, never in a silent retry loop: one ERROR
naming the notification id, aggregate and reason, the ``berth_relay_stuck`` marker, ``berth
doctor`` and ``/healthz`` naming it; once the event can travel again the relay goes on and
forgets it. The events are written straight into the store, past the travel guard, as history
from before it (or a foreign writer) could hold them."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import msgspec
import psycopg
import pytest
from eventsourcing.persistence import StoredEvent

from contracts import commands as c
from contracts.catalog import encode_event
from contracts.envelope import Event
from contracts.session import KernelSpec, SessionSpec
from domain import session as session_domain
from services.sdk.client import BerthClient
from services.application.context import make_context
from services.application.sessions import Sessions
from services.common.settings import Settings
from services.projector.main import run_projector
from services.relay.main import run_relay
from tests.integration.test_doctor import DOCTOR, berth_doctor
from tests.support.gateway import Keys, clean_streams, keys, read_models, served  # noqa: F401 - fixtures
from tests.support.publish import ServiceTasks, service_tasks
from tests.support.relay import (  # noqa: F401 - fixtures
    jetstream, own_nats, request_sessions, run_until_stopped, sessions, settings, stop_task, store_ids,
    stream_messages, stream_positions,
)
from tests.support.waiting import async_wait_for

TOO_LARGE = 1_200_000
"""Bytes of a startup command that makes an event larger than NATS' default max_payload (1 MiB)."""


def requested(session_id: str, startup_command: str | None = None) -> Event:
    kernel = KernelSpec(kernel_id=f"{session_id}-k", slots={"cpu": Decimal(1), "mem": Decimal(2**30)})
    command = c.RequestSession(owner="ak-test", spec=SessionSpec(
        name="s", image="python:3.11", startup_command=startup_command, kernels=[kernel],
    ))
    (event,) = session_domain.decide(None, command, make_context("ak-test"), session_id)
    return event


def write_past_the_guard(app: Sessions, event: Event) -> int:
    """Inserts ``event`` with the store's recorder, past the mapper and its travel guard; returns its id."""
    stored = StoredEvent(originator_id=event.originator_id, originator_version=event.originator_version,
                         topic=type(event).type_name(), state=encode_event(event))
    app.recorder.insert_events([stored])
    return app.position()


def stuck_row(dsn: str) -> tuple | None:
    with psycopg.connect(dsn) as conn:
        if conn.execute("SELECT to_regclass('berth_relay_stuck')").fetchone()[0] is None:
            return None
        return conn.execute("SELECT notification_id, aggregate_id, topic, reason FROM berth_relay_stuck").fetchone()


async def test_an_unpublishable_event_stops_the_relay_loudly_until_it_can_travel(
    settings: Settings, sessions: Sessions, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.relay")
    await asyncio.to_thread(request_sessions, sessions, range(0, 2))
    newline = await asyncio.to_thread(write_past_the_guard, sessions, msgspec.structs.replace(
        requested("n1"), originator_id="n1\n"))  # its subject would break the protocol: published as ev.invalid
    await asyncio.to_thread(request_sessions, sessions, range(2, 3))
    poison = await asyncio.to_thread(write_past_the_guard, sessions, requested("big", "x" * TOO_LARGE))
    await asyncio.to_thread(request_sessions, sessions, range(3, 5))

    stop, relay = await run_until_stopped(lambda s, st: run_relay(s, st, stuck_retry=600), settings)
    await async_wait_for(lambda: stuck_row(settings.pg_dsn), timeout=30, message="the relay did not say it is stuck")
    await asyncio.sleep(2)  # room to spin, if it did
    async with jetstream(settings.nats_url) as js:
        messages = await stream_messages(js)
    await stop_task(stop, relay)

    assert stream_positions(messages) == store_ids(settings.pg_dsn)[:poison - 1], "everything before it, in order"
    assert messages[newline - 1].subject == f"ev.invalid.{newline}.event"
    notification_id, aggregate_id, topic, reason = stuck_row(settings.pg_dsn)
    assert (notification_id, aggregate_id, topic) == (poison, "big", "session.requested")
    assert "max_payload" in reason and str(len(encode_event(requested("big", "x" * TOO_LARGE)))) in reason
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "stuck" in r.getMessage()]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert f"notification {poison}" in errors[0].getMessage() and "big" in errors[0].getMessage()
    assert not [r for r in caplog.records if "interrupted" in r.getMessage()], "no retry loop"

    with psycopg.connect(settings.pg_dsn) as conn:  # an operator's fix: the event made small enough to travel
        conn.execute("UPDATE berth_events SET state = %s WHERE notification_id = %s",
                     (encode_event(requested("big", "python train.py")), poison))
    stop, relay = await run_until_stopped(run_relay, settings)
    async with jetstream(settings.nats_url) as js:
        await async_wait_for(lambda: _count(js, len(store_ids(settings.pg_dsn))), timeout=30,
                             message="the relay did not go on after the fix")
        assert stream_positions(await stream_messages(js)) == store_ids(settings.pg_dsn)
    await async_wait_for(lambda: stuck_row(settings.pg_dsn) is None, timeout=10, message="the marker stayed")
    await stop_task(stop, relay)


async def _count(js, count: int) -> bool:
    return len(await stream_messages(js)) >= count


@pytest.fixture
async def pipeline(served: str, nats_url: str, pg_dsn: str) -> AsyncIterator[ServiceTasks]:
    settings = Settings(nats_url=nats_url, pg_dsn=pg_dsn)
    async with service_tasks() as tasks:
        tasks.start("relay", lambda stop: run_relay(settings, stop, stuck_retry=600))
        tasks.start("projector", lambda stop: run_projector(settings, stop))
        yield tasks


async def test_doctor_and_healthz_name_the_event_the_relay_is_stuck_at(
    pipeline: ServiceTasks, served: str, keys: Keys, pg_dsn: str
) -> None:
    async with httpx.AsyncClient(base_url=served) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
    with Sessions(pg_dsn) as app:
        await asyncio.to_thread(request_sessions, app, range(0, 2))
        poison = await asyncio.to_thread(write_past_the_guard, app, requested("big", "x" * TOO_LARGE))
        await asyncio.to_thread(request_sessions, app, range(2, 3))
    await async_wait_for(lambda: stuck_row(pg_dsn), timeout=30, message="the relay did not say it is stuck")

    async with BerthClient(served, *keys.admin) as admin:
        report = (await admin.execute(DOCTOR))["doctor"]
    assert report["clean"] is False and report["position"] == poison - 1
    assert {"name": "relay", "subjects": 1, "drifts": 1} in report["checks"]
    (drift,) = [d for d in report["drifts"] if d["kind"] == "relay-stuck"]
    assert drift["subject"] == f"notification/{poison}"
    assert drift["actual"].startswith(f"relay stuck at notification {poison} (session.requested of big): ")
    assert "max_payload" in drift["actual"]

    status, output = await berth_doctor(served, keys.admin)
    assert status == 1 and f"relay stuck at notification {poison}" in json.loads(output)["drifts"][0]["actual"]
    async with httpx.AsyncClient(base_url=served) as http:
        health = await http.get("/healthz")
    assert health.status_code == 503
    assert health.json()["status"] == "relay-stuck" and f"notification {poison}" in health.json()["relay"]
    pipeline.check()
