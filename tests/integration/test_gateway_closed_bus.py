"""The gateway ends with ``BusClosedError`` once its NATS connection is closed for good, on a real NATS server and
PostgreSQL, so that its supervisor (``berth up``) starts it again: nats-py reconnects no more after ``close()`` or a
protocol error of the server, so every subscription (``sessionEvents``, ``vfolderEvents``...) and every request to an
agent (``execute``, app tunnels) failed from then on, while its HTTP server went on answering, ``/healthz`` 200
("degraded", at most), and the process was never started again. Meanwhile ``/healthz`` answers 503 ``bus-closed``."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from nats.aio.client import Client

from services.common.settings import Settings
from services.gateway.main import build_app, run_gateway
from tests.integration.test_follow_closed_bus import ENDS_WITHIN, clients, is_bus_closed  # noqa: F401 - a fixture
from tests.support.gateway import Keys, clean_streams, keys, read_models  # noqa: F401 - fixtures

GATEWAY_CONNECTION = "berth-gateway"


async def test_the_gateway_ends_when_its_connection_is_closed_for_good(
        read_models: str, keys: Keys, nats_url: str, clean_streams: Any, clients: list[Client]) -> None:
    settings = Settings(pg_dsn=read_models, nats_url=nats_url, gateway_host="127.0.0.1", gateway_port=0)
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_gateway(settings, stop, ready.set_result))
    try:
        await asyncio.wait({task, ready}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        assert ready.done() and not task.done(), task
        async with httpx.AsyncClient(base_url=ready.result()) as http:
            assert (await http.get("/healthz")).json() == {"status": "ok"}  # the gateway has connected to NATS
        [nc] = [c for c in clients if c.options["name"] == GATEWAY_CONNECTION]

        await nc.close()

        done, _ = await asyncio.wait([task], timeout=ENDS_WITHIN)
        assert done, f"the gateway did not end within {ENDS_WITHIN} s of its connection's closure"
        assert is_bus_closed(task.exception()), task.exception()
    finally:
        stop.set()
        await asyncio.wait([task], timeout=30)


async def test_healthz_is_unavailable_once_the_connection_is_closed_for_good(read_models: str, keys: Keys,
                                                                            nats_url: str) -> None:
    app = build_app(Settings(pg_dsn=read_models, nats_url=nats_url))
    try:
        async with httpx.AsyncClient(base_url="http://gateway.test", transport=httpx.ASGITransport(app=app)) as http:
            assert (await http.get("/healthz")).json() == {"status": "ok"}

            await (await app.resources.nats()).close()

            answer = await http.get("/healthz")
            assert answer.status_code == 503, answer.text
            assert answer.json()["status"] == "bus-closed", answer.text
    finally:
        await app.aclose()
