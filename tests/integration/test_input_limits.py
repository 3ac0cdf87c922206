"""Nothing recorded that cannot travel, through the gateway: a createSession with a ~450 kB image
or startup command (the request that used to halt the relay) is refused with BAD_INPUT naming
the field and its limit, records nothing, and the next ordinary request works; the same for
tenancy input, a session name or id with a trailing newline, and an event the domain would
accept but the travel guard refuses."""

from __future__ import annotations

import asyncio
import json

import httpx
import msgspec
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from contracts import commands as c
from contracts.session import KernelSpec, SessionSpec
from contracts.travel import MAX_EVENT_BYTES, TravelError
from domain import session as session_domain
from services.gateway.auth.middleware import MAX_BODY
from services.gateway.main import WS_MAX_MESSAGE
from services.sdk.client import BerthAPIError, BerthClient
from services.application.context import make_context
from services.application.sessions import Sessions
from tests.integration.test_exec import backend, cluster, running_session, sessions  # noqa: F401 - fixtures
from tests.support.gateway import (  # noqa: F401 - fixtures
    CREATE, TERMINATE, Keys, clean_streams, client_for, count_events, gateway, keys, read_models, served,
)
from tests.support.tenancy import CREATE_DOMAIN, CREATE_RGROUP, refused

BIG = 450_000
AGENT = ("local",)
"""The agent of ``cluster``: its own events (lost and recovered under load) are not the requests'."""


async def assert_bad_input(client: BerthClient, pg_dsn: str, query: str, variables: dict, fragment: str) -> None:
    before = count_events(pg_dsn)
    error = await refused(client, query, variables)
    assert (error.code, fragment in error.message) == ("BAD_INPUT", True), error.message
    assert len(error.message) < 1000, "the refusal does not echo the input"
    assert count_events(pg_dsn) == before


async def test_a_450_kb_create_session_is_refused_and_the_next_one_works(
    client_for, keys: Keys, pg_dsn: str
) -> None:
    alice = client_for(keys.alice)
    await assert_bad_input(alice, pg_dsn, CREATE, {"input": {"image": "x" * BIG}},
                           f"image: at most 255 characters, got {BIG}")
    await assert_bad_input(alice, pg_dsn, CREATE, {"input": {"startupCommand": "x" * BIG}},
                           f"startupCommand: at most 65536 bytes (UTF-8), got {BIG}")
    await assert_bad_input(alice, pg_dsn, CREATE, {"input": {"image": "x" * BIG, "startupCommand": "y" * BIG}},
                           "at most")
    await assert_bad_input(alice, pg_dsn, CREATE, {"input": {"name": "train\n"}}, "session name")
    await assert_bad_input(alice, pg_dsn, CREATE, {"input": {"project": "p" * BIG}}, "project: at most 128")
    await assert_bad_input(alice, pg_dsn, CREATE, {"input": {"resources": [{"slot": "cpu", "amount": "9" * BIG}]}},
                           "resource amount: at most 64")
    await assert_bad_input(alice, pg_dsn, CREATE, {"input": {"resources": [{"slot": "mem", "amount": "1" + "0" * 50}]}},
                           "at most 9223372036854775807 bytes")  # before: accepted, and the scheduler halted
    await assert_bad_input(alice, pg_dsn, CREATE, {"input": {"resources": [{"slot": "cpu", "amount": "0.00000001"}]}},
                           "at most 6 decimal places")
    await assert_bad_input(alice, pg_dsn, TERMINATE, {"id": "0" * 31 + "\n"}, "invalid session id")

    before = count_events(pg_dsn)
    created = (await alice.execute(CREATE, {"input": {"name": "after", "startupCommand": "python train.py"}}))
    assert created["createSession"]["position"] > 0 and count_events(pg_dsn) == before + 2  # + the name's claim


async def test_oversized_tenancy_input_is_refused(client_for, keys: Keys, pg_dsn: str) -> None:
    admin = client_for(keys.admin)
    await assert_bad_input(admin, pg_dsn, CREATE_DOMAIN, {"i": {"name": "lab", "description": "x" * BIG}},
                           "description: at most 1024 characters")
    await assert_bad_input(admin, pg_dsn, CREATE_DOMAIN, {"i": {"name": "d" * BIG}}, "name: at most 64 characters")
    await assert_bad_input(admin, pg_dsn, CREATE_RGROUP, {"i": {"name": "g", "keypairs": ["k"] * 300}},
                           "keypairs: at most 256 entries")
    await assert_bad_input(admin, pg_dsn, CREATE_DOMAIN, {"i": {"name": "lab\n"}}, "invalid domain name")
    assert (await admin.execute(CREATE_DOMAIN, {"i": {"name": "lab", "description": "x" * 1024}}))["createDomain"]


async def test_variables_that_do_not_fit_the_schema_are_bad_input_not_internal(client_for, keys: Keys,
                                                                                pg_dsn: str) -> None:
    """graphql-core refuses them before any resolver runs; they reached the client as INTERNAL."""
    alice = client_for(keys.alice)
    for variables, fragment in (({"input": {"kernels": 1}}, "not to include unknown field"),
                                ({"input": "x" * BIG}, "to be an object"),
                                ({}, "to be provided")):
        await assert_bad_input(alice, pg_dsn, CREATE, variables, fragment)


MALFORMED_BODIES = [b"{not json", b'"x"', b"[1, 2]", b'{"query": 5}', b'{"query": "{ __typename }", "variables": "x"}']
STATUS = "subscription($id: String!) { sessionStatus(sessionId: $id) { status } }"


async def _refused_over_the_websocket(url: str, client: BerthClient, message: str) -> int:
    """Sends ``message`` after an accepted connection_init; returns the code the gateway closes with."""
    async with ws_connect(url, subprotocols=["graphql-transport-ws"], max_size=None) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": client.connection_params()}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "connection_ack"
        await ws.send(message)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 30)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


async def test_oversized_and_malformed_input_over_http_and_websocket_then_a_session_runs(
    served: str, keys: Keys, cluster, sessions, pg_dsn: str,
) -> None:
    """Refused, nothing recorded, and the next session still reaches RUNNING on a real agent."""
    before = count_events(pg_dsn, excluding=AGENT)
    async with BerthClient(served, *keys.alice) as alice, httpx.AsyncClient() as http:
        for variables, fragment in (({"input": {"image": "x" * BIG}}, "image: at most 255"),
                                    ({"input": {"name": "a\x00b"}}, "must not contain NUL"),
                                    ({"input": {"startupCommand": "x" * (MAX_BODY + 1)}}, "larger than")):
            with pytest.raises(BerthAPIError) as refused:
                await alice.execute(CREATE, variables)
            assert (refused.value.code, fragment in refused.value.message) == ("BAD_INPUT", True), refused.value
        for body in MALFORMED_BODIES:  # each was a plain-text 400, '"x"' a 500 (strawberry failed on it)
            response = await http.post(alice.graphql_url, content=body,
                                       headers=alice.signed_headers("POST", alice.graphql_url, body))
            assert response.status_code == 400, (body, response.status_code, response.text)
            assert response.json()["errors"][0]["extensions"]["code"] == "BAD_INPUT", response.text

        ws_url = "ws" + alice.graphql_url[len("http"):]
        with pytest.raises(BerthAPIError) as refused:
            async for _ in alice.subscribe(STATUS, {"id": "x" * BIG}):
                pass
        assert refused.value.code == "BAD_INPUT" and f"({BIG} characters)" in refused.value.message
        assert await _refused_over_the_websocket(ws_url, alice, "{not json") == 4400
        too_big = {"type": "subscribe", "id": "1", "payload": {"query": STATUS, "variables": {"id": "x" * WS_MAX_MESSAGE}}}
        assert await _refused_over_the_websocket(ws_url, alice, json.dumps(too_big)) == 1009
        assert count_events(pg_dsn, excluding=AGENT) == before

        session_id = await running_session(alice, sessions)
    assert count_events(pg_dsn, excluding=AGENT) > before and session_id


def test_the_store_refuses_an_event_that_cannot_travel_whatever_the_path(pg_dsn: str) -> None:
    """Sessions.request without the gateway's limits: the guard where events are saved refuses it."""
    with Sessions(pg_dsn) as sessions:
        command = c.RequestSession(owner="AK1", spec=SessionSpec(
            name="big", image="python:3.11", startup_command="x" * MAX_EVENT_BYTES,
            kernels=[KernelSpec(kernel_id="s1-k0", slots={"cpu": "1", "mem": "1g"})],
        ))
        with pytest.raises(TravelError, match=f"over the limit of {MAX_EVENT_BYTES} bytes"):
            sessions.request("s1", command, make_context("AK1"))
        with pytest.raises(TravelError, match="invalid id"):
            sessions.record([_requested_with_id("s2\n")])
        assert count_events(pg_dsn) == 0 and sessions.position() == 0
        small = c.RequestSession(owner="AK1", spec=SessionSpec(
            name="ok", image="python:3.11",
            kernels=[KernelSpec(kernel_id="s3-k0", slots={"cpu": "1", "mem": "1g"})],
        ))
        assert sessions.request("s3", small, make_context("AK1")) == 1


def _requested_with_id(session_id: str):
    """A ``session.requested`` event for an id the domain would refuse (built past its checks)."""
    command = c.RequestSession(owner="AK1", spec=SessionSpec(
        name="n", image="python:3.11", kernels=[KernelSpec(kernel_id="k", slots={"cpu": "1", "mem": "1g"})],
    ))
    (event,) = session_domain.decide(None, command, make_context("AK1"), "s2")
    return msgspec.structs.replace(event, originator_id=session_id)
