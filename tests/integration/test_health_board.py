"""The outages a service process waits out reach the health bucket (real NATS): put while they
last, emptied when the dependency is back, deleted when the process stops; the gateway's
``/healthz`` answers ``degraded`` with them."""

from __future__ import annotations

import asyncio

import httpx
import psycopg
from nats.js import JetStreamContext

from services.common.health_board import publish_health, read_health
from services.common.transient import OUTAGES
from tests.support.gateway import clean_streams, keys, read_models, served  # noqa: F401 - fixtures
from tests.support.waiting import async_wait_for


async def outages_of(js: JetStreamContext, service: str) -> list[str] | None:
    found = [h for h in await read_health(js) if h.service == service]
    return found[0].outages if found else None


async def test_a_process_outages_are_on_the_health_board(nats_url: str, js: JetStreamContext) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(publish_health(nats_url, "boardtest", stop))
    try:
        await async_wait_for(lambda: _is(outages_of(js, "boardtest"), []), timeout=30, message="no outage put")
        OUTAGES.failed("boardtest-consumer", "postgresql", psycopg.OperationalError("connection refused"))
        await async_wait_for(lambda: _has(outages_of(js, "boardtest"), "boardtest-consumer waiting for postgresql"),
                             timeout=30, message="the outage put")
        OUTAGES.recovered("boardtest-consumer")
        await async_wait_for(lambda: _is(outages_of(js, "boardtest"), []), timeout=30, message="the outage cleared")
    finally:
        OUTAGES.forget("boardtest-consumer")
        stop.set()
        await asyncio.wait_for(task, 30)
    assert await outages_of(js, "boardtest") is None, "deleted when the process stops"


async def _is(found: asyncio.Future | object, expected: list[str]) -> bool:
    return await found == expected  # type: ignore[misc]


async def _has(found: asyncio.Future | object, text: str) -> bool:
    lines = await found  # type: ignore[misc]
    return bool(lines) and any(text in line for line in lines)


async def test_healthz_is_degraded_while_a_service_waits_out_an_outage(served: str, nats_url: str) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(publish_health(nats_url, "healthtest", stop))
    try:
        async with httpx.AsyncClient(base_url=served) as http:
            OUTAGES.failed("healthtest-consumer", "nats", ConnectionError("x"))

            async def degraded() -> bool:
                body = (await http.get("/healthz")).json()
                return body["status"] == "degraded" and any(
                    "healthtest (pid" in line and "healthtest-consumer waiting for nats" in line
                    for line in body["outages"])

            await async_wait_for(degraded, timeout=30, message="/healthz names the outage")
            OUTAGES.recovered("healthtest-consumer")

            async def ok() -> bool:
                return (await http.get("/healthz")).json() == {"status": "ok"}

            await async_wait_for(ok, timeout=30, message="/healthz ok again")
    finally:
        OUTAGES.forget("healthtest-consumer")
        stop.set()
        await asyncio.wait_for(task, 30)
