"""Hostile request documents, over HTTP and the websocket of a real uvicorn server: JSON nested too deep
to decode, lone UTF-16 surrogates (escaped or raw), a document of too many field selections, and a
``connection_init`` whose access key holds NUL. Each is a clean refusal (HTTP 400 / BAD_INPUT, a
websocket closed 4400 or as unauthenticated), nothing is recorded, nothing is logged as an error, and
the next ordinary request works."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from services.gateway.schema import MAX_SELECTIONS
from services.sdk.client import BerthClient
from tests.support.gateway import (  # noqa: F401 - fixtures
    CREATE, Keys, clean_streams, count_events, keys, read_models, served,
)

DEEP = 50_000
QUERY = "{ sessions { edges { id } } }"
PROTOCOLS = [Subprotocol("graphql-transport-ws")]
NESTED = '{"query": "{__typename}", "variables": {"x": ' + "[" * DEEP + "]" * DEEP + "}}"
SURROGATE_BODIES = [  # a lone surrogate in a value, in a key, in the query text, as (invalid) UTF-8 bytes
    (json.dumps({"query": CREATE, "variables": {"input": {"name": "x\ud800"}}}).encode(), "lone UTF-16 surrogate"),
    (json.dumps({"query": QUERY, "variables": {"\udc00": 1}}).encode(), "lone UTF-16 surrogate"),
    (json.dumps({"query": "{ __typename } # \udbff"}).encode(), "lone UTF-16 surrogate"),
    (b'{"query": "' + CREATE.encode() + b'", "variables": {"input": {"name": "x\xed\xa0\x80"}}}', "not valid Unicode"),
]


def _errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]


async def _post(http: httpx.AsyncClient, client: BerthClient, body: bytes) -> httpx.Response:
    return await http.post(client.graphql_url, content=body,
                           headers=client.signed_headers("POST", client.graphql_url, body))


def _bad_input(response: httpx.Response, fragment: str) -> None:
    assert response.status_code == 400, (response.status_code, response.text[:300])
    error = response.json()["errors"][0]
    assert (error["extensions"]["code"], fragment in error["message"]) == ("BAD_INPUT", True), error


async def test_json_nested_too_deep_is_bad_input_and_the_next_request_works(
    served: str, keys: Keys, pg_dsn: str, caplog: pytest.LogCaptureFixture,
) -> None:
    async with BerthClient(served, *keys.alice) as alice, httpx.AsyncClient(timeout=30) as http:
        _bad_input(await _post(http, alice, NESTED.encode()), "nested too deep")
        assert await alice.execute(QUERY) == {"sessions": {"edges": []}}
    assert not _errors_logged(caplog)


async def test_lone_surrogates_are_bad_input_and_paired_ones_pass(
    served: str, keys: Keys, pg_dsn: str, caplog: pytest.LogCaptureFixture,
) -> None:
    before = count_events(pg_dsn)
    async with BerthClient(served, *keys.alice) as alice, httpx.AsyncClient(timeout=30) as http:
        for body, fragment in SURROGATE_BODIES:
            _bad_input(await _post(http, alice, body), fragment)
        assert count_events(pg_dsn) == before
        for variables in ({"note": "\ud83d\ude00"}, {"note": "\\ud800 is only text"}):  # a pair; an escaped backslash
            body = json.dumps({"query": "{ __typename }", "variables": variables}).encode()
            answered = await _post(http, alice, body)
            assert answered.status_code == 200 and answered.json() == {"data": {"__typename": "Query"}}, answered.text
    assert not _errors_logged(caplog)


async def test_a_document_of_too_many_selections_is_bad_input(served: str, keys: Keys) -> None:
    wide = "{" + " sessions{edges{id}}" * 280 + "}"
    async with BerthClient(served, *keys.alice) as alice, httpx.AsyncClient(timeout=30) as http:
        refused = await _post(http, alice, json.dumps({"query": wide}).encode())
        error = refused.json()["errors"][0]
        assert error["extensions"]["code"] == "BAD_INPUT" and f"at most {MAX_SELECTIONS}" in error["message"], error
        assert await alice.execute(QUERY) == {"sessions": {"edges": []}}


async def _closed_with(url: str, message: str) -> tuple[int, str]:
    """Sends ``message`` as the first websocket message (no credentials before it); returns the close code and
    reason the gateway answers with."""
    async with asyncio.timeout(30), ws_connect(url, subprotocols=PROTOCOLS, max_size=None) as ws:
        await ws.send(message)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.recv()
    assert closed.value.rcvd is not None, "the gateway closed the socket with a code"
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def test_hostile_websocket_messages_before_authentication_are_refused_cleanly(
    served: str, keys: Keys, pg_dsn: str, caplog: pytest.LogCaptureFixture,
) -> None:
    ws_url = "ws" + served[len("http"):] + "/graphql"
    deep = '{"type": "connection_init", "payload": {"x": ' + "[" * DEEP + "]" * DEEP + "}}"
    assert await _closed_with(ws_url, deep) == (4400, "WebSocket message must be valid JSON")
    for payload in ({"authorization": "Bearer \ud800"}, {"\udfff": "x"}):
        message = json.dumps({"type": "connection_init", "payload": payload})
        assert (await _closed_with(ws_url, message))[0] == 4400
    date = dt.datetime.now(dt.UTC).isoformat()
    for access_key in ("AK\x00IA", "AKIA-1", "A" * 65):
        init = {"authorization": f"BackendAI signMethod=HMAC-SHA256, credential={access_key}:abcdef",
                "x-backendai-date": date}
        code, reason = await _closed_with(ws_url, json.dumps({"type": "connection_init", "payload": init}))
        assert (code, reason) == (4403, "UNAUTHENTICATED: authentication failed"), access_key
    async with BerthClient(served, *keys.alice) as alice, asyncio.timeout(30), \
            ws_connect(ws_url, subprotocols=PROTOCOLS) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": alice.connection_params()}))
        assert json.loads(await ws.recv())["type"] == "connection_ack", "an ordinary connection_init still opens"
    assert not _errors_logged(caplog)
