"""Gateway authentication over HTTP: HMAC signing, the date window, bearer tokens, unknown keys.

No refused request writes an event.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator

import httpx
import psycopg
import pytest

from services.sdk.signing import sign_request
from services.gateway.app import GatewayApp
from services.gateway.auth.keypairs import create_keypair, ensure_admin_keypair
from services.application.tenancy import ensure_defaults
from tests.support.gateway import (  # noqa: F401 - fixtures
    CREATE, Keys, client_for, count_events, create_user, gateway, keys, read_models,
)

HOST = "gateway.test"
URL = f"http://{HOST}/graphql"
CREATE_BODY = json.dumps({"query": CREATE, "variables": {"input": {}}}).encode()


@pytest.fixture
async def http(gateway: GatewayApp) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway)) as client:
        yield client


def signed(keypair: tuple[str, str], body: bytes = CREATE_BODY, *, path: str = "/graphql",
           date: dt.datetime | None = None) -> dict[str, str]:
    return sign_request(access_key=keypair[0], secret_key=keypair[1], method="POST", path=path, host=HOST,
                        body=body, date=date)


def error_of(response: httpx.Response) -> tuple[str, str]:
    error = response.json()["errors"][0]
    return error["extensions"]["code"], error["message"]


async def test_unsigned_request_gets_401_and_writes_nothing(http: httpx.AsyncClient, pg_dsn: str) -> None:
    before = count_events(pg_dsn)
    response = await http.post(URL, content=CREATE_BODY, headers={"content-type": "application/json"})
    assert response.status_code == 401
    code, message = error_of(response)
    assert code == "UNAUTHENTICATED" and "authentication failed" in message
    assert count_events(pg_dsn) == before


async def test_wrong_signature_gets_401(http: httpx.AsyncClient, keys: Keys, pg_dsn: str) -> None:
    before = count_events(pg_dsn)
    response = await http.post(URL, content=CREATE_BODY, headers=signed((keys.alice[0], "not-the-secret")))
    assert response.status_code == 401
    assert error_of(response) == ("UNAUTHENTICATED", "authentication failed")
    assert count_events(pg_dsn) == before


async def test_swapped_body_gets_401(http: httpx.AsyncClient, keys: Keys, pg_dsn: str) -> None:
    before = count_events(pg_dsn)
    other = json.dumps({"query": CREATE, "variables": {"input": {"name": "other"}}}).encode()
    response = await http.post(URL, content=other, headers=signed(keys.alice))
    assert response.status_code == 401
    assert error_of(response)[1] == "authentication failed"
    assert count_events(pg_dsn) == before


@pytest.mark.parametrize("skew", [dt.timedelta(minutes=-16), dt.timedelta(minutes=16)])
async def test_date_outside_window_gets_401(http: httpx.AsyncClient, keys: Keys, pg_dsn: str, skew: dt.timedelta) -> None:
    before = count_events(pg_dsn)
    headers = signed(keys.alice, date=dt.datetime.now(dt.UTC) + skew)
    response = await http.post(URL, content=CREATE_BODY, headers=headers)
    assert response.status_code == 401
    assert error_of(response) == ("UNAUTHENTICATED", "authentication failed")
    assert count_events(pg_dsn) == before


async def test_unknown_or_inactive_keypair_gets_401(http: httpx.AsyncClient, keys: Keys, pg_dsn: str) -> None:
    before = count_events(pg_dsn)
    unknown = await http.post(URL, content=CREATE_BODY, headers=signed(("AKIA0000000000000000", "x" * 40)))
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE keypairs SET is_active = false WHERE access_key = %s", (keys.bob[0],))
    inactive = await http.post(URL, content=CREATE_BODY, headers=signed(keys.bob))
    for response in (unknown, inactive):
        assert response.status_code == 401
        assert error_of(response) == ("UNAUTHENTICATED", "authentication failed")
    assert count_events(pg_dsn) == before


async def test_signed_request_is_accepted(http: httpx.AsyncClient, keys: Keys, pg_dsn: str) -> None:
    before = count_events(pg_dsn)
    response = await http.post(URL, content=CREATE_BODY, headers=signed(keys.alice))
    assert response.status_code == 200, response.text
    assert response.json()["data"]["createSession"]["position"] > 0
    assert count_events(pg_dsn) == before + 2  # session.requested and the claim of its name


async def test_bearer_token_works_and_a_bad_one_does_not(http: httpx.AsyncClient, keys: Keys, pg_dsn: str) -> None:
    issued = await http.post(f"http://{HOST}/auth/token", content=b"",
                             headers=signed(keys.alice, b"", path="/auth/token"))
    assert issued.status_code == 200, issued.text
    token = issued.json()["token"]
    assert issued.json()["access_key"] == keys.alice[0]
    query = {"query": "{ sessions { edges { id } } }"}
    ok = await http.post(URL, json=query, headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200 and ok.json()["data"]["sessions"]["edges"] == []
    before = count_events(pg_dsn)
    bad = await http.post(URL, content=CREATE_BODY, headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code == 401 and error_of(bad) == ("UNAUTHENTICATED", "authentication failed")
    assert count_events(pg_dsn) == before


async def test_token_endpoint_needs_a_signature(http: httpx.AsyncClient, keys: Keys) -> None:
    unsigned = await http.post(f"http://{HOST}/auth/token")
    assert unsigned.status_code == 401
    wrong = await http.post(f"http://{HOST}/auth/token", content=b"",
                            headers=signed((keys.alice[0], "wrong"), b"", path="/auth/token"))
    assert wrong.status_code == 401 and error_of(wrong)[1] == "authentication failed"


async def test_graphiql_page_is_public_but_its_queries_are_not(http: httpx.AsyncClient) -> None:
    page = await http.get(URL, headers={"accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()
    query = await http.get(URL, params={"query": "{ agents { id } }"})
    assert query.status_code == 401


async def test_signed_get_with_query_string(http: httpx.AsyncClient, keys: Keys) -> None:
    url = httpx.URL(URL, params={"query": "{ agents { id } }"})
    headers = sign_request(access_key=keys.alice[0], secret_key=keys.alice[1], method="GET",
                           path=url.raw_path.decode(), host=HOST, body=b"")
    response = await http.get(url, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"agents": []}}


def test_the_admin_keypair_is_created_once(keys: Keys, pg_dsn: str) -> None:
    assert ensure_admin_keypair(pg_dsn) is None
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute("SELECT access_key, role FROM keypairs WHERE role = 'superadmin'").fetchall()
    assert rows == [(keys.admin[0], "superadmin")]


def test_keypairs_look_like_backend_ai_and_record_an_event_without_the_secret(pg_dsn: str) -> None:
    ensure_defaults(pg_dsn)
    create_user(pg_dsn, "carol", role="admin")
    access_key, secret_key = create_keypair(pg_dsn, "carol")
    assert access_key.startswith("AKIA") and len(access_key) == 20 and access_key[4:].isalnum()
    assert access_key == access_key.upper() and len(secret_key) == 40
    with psycopg.connect(pg_dsn) as conn:
        topic, state = conn.execute(
            "SELECT topic, state FROM berth_events WHERE originator_id = %s", (access_key,)
        ).fetchone()
    assert topic == "keypair.created"
    assert secret_key.encode() not in bytes(state)
    assert json.loads(bytes(state))["user"] == "carol"


async def test_replayed_signed_request_gets_401_and_creates_nothing(http: httpx.AsyncClient, keys: Keys, pg_dsn: str) -> None:
    """A captured createSession sent again within the date window: the first creates a session, the
    replay gets the one answer for every authentication failure and records nothing."""
    headers = signed(keys.alice)
    first = await http.post(URL, content=CREATE_BODY, headers=headers)
    assert first.status_code == 200, first.text
    after_first = count_events(pg_dsn)
    replay = await http.post(URL, content=CREATE_BODY, headers=headers)
    assert replay.status_code == 401
    assert error_of(replay) == ("UNAUTHENTICATED", "authentication failed")
    assert count_events(pg_dsn) == after_first


async def test_replayed_token_request_mints_no_token(http: httpx.AsyncClient, keys: Keys, pg_dsn: str) -> None:
    headers = signed(keys.alice, b"", path="/auth/token")
    first = await http.post(f"http://{HOST}/auth/token", content=b"", headers=headers)
    assert first.status_code == 200, first.text
    replay = await http.post(f"http://{HOST}/auth/token", content=b"", headers=headers)
    assert replay.status_code == 401 and error_of(replay)[1] == "authentication failed"
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM auth_tokens WHERE access_key = %s",
                            (keys.alice[0],)).fetchone()[0] == 1


async def test_a_signature_another_keypair_used_is_no_replay(http: httpx.AsyncClient, keys: Keys) -> None:
    """The ledger is keyed by access key and signature; the same request of two keypairs passes."""
    date = dt.datetime.now(dt.UTC)
    query = json.dumps({"query": "{ sessions { edges { id } } }"}).encode()
    for keypair in (keys.alice, keys.bob):
        response = await http.post(URL, content=query, headers=signed(keypair, query, date=date))
        assert response.status_code == 200, response.text


async def test_sdk_client_sends_the_same_query_twice_in_a_row(client_for, keys: Keys) -> None:  # noqa: ANN001 - fixture
    """The SDK signs every request afresh: a poll that repeats a query within a clock tick is no replay."""
    client = client_for(keys.alice)
    for _ in range(5):
        assert await client.execute("{ sessions { edges { id } } }") == {"sessions": {"edges": []}}
