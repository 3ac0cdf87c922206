"""``execute_while_unavailable`` (`berth run --rm`'s cleanup, `berth session rm`) waits through a gateway restart.

Found by trying Berth under faults: a gateway killed (and restarted by the supervisor within seconds) during five
`berth run --rm` ended each stream, and each command's termination failed at once with "All connection attempts
failed": five sessions left RUNNING, holding their slots, with nobody left to remove them. A connection the gateway
refuses never reached it, so sending the termination again is safe; a client the gateway never answered still
fails at once (no Berth running: said without a wait)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from services.cli.queries import TERMINATE_SESSION
from services.sdk.client import BerthClient
from tests.support.gateway import Keys
from tests.support.gateway import clean_streams, keys, read_models, served  # noqa: F401 - fixtures
from tests.support.tcp_proxy import tcp_proxy
from tests.support.waiting import async_wait_for


class CountingTransport(httpx.AsyncHTTPTransport):
    """The real HTTP transport, counting the requests it was asked to send."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        return await super().handle_async_request(request)


async def test_a_termination_is_sent_again_until_a_restarting_gateway_accepts_it(served: str, keys: Keys) -> None:
    async with tcp_proxy(served) as gateway:
        transport = CountingTransport()
        async with BerthClient(f"http://127.0.0.1:{gateway.port}", *keys.alice, transport=transport) as alice:
            session_id = (await alice.create_session({"name": "kept-by-a-restart"}))["sessionId"]
            await gateway.close()  # the gateway is away: every connection refused
            sent = transport.sent
            terminating = asyncio.ensure_future(alice.execute_while_unavailable(TERMINATE_SESSION, {"id": session_id}))
            await async_wait_for(lambda: transport.sent >= sent + 2 or terminating.done(), timeout=60,
                                 message="the termination was never sent again")
            assert not terminating.done(), terminating  # before: httpx.ConnectError at the first refusal
            await gateway.open()
            terminated: dict[str, Any] = await asyncio.wait_for(terminating, 60)
    assert terminated["terminateSession"]["sessionId"] == session_id


async def test_a_gateway_that_never_answered_is_not_waited_for(served: str, keys: Keys) -> None:
    async with tcp_proxy(served) as gateway:
        await gateway.close()
        transport = CountingTransport()
        async with BerthClient(f"http://127.0.0.1:{gateway.port}", *keys.alice, transport=transport) as alice:
            with pytest.raises(httpx.ConnectError):
                await alice.execute_while_unavailable(TERMINATE_SESSION, {"id": "0" * 32})
    assert transport.sent == 1
