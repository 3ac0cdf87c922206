"""The gateway's keypair cache (``services.gateway.auth.keypair_cache``) on real PostgreSQL: a warm
signed request reads no keypair, and a deactivation is refused at the very next request of every
gateway, however warm its cache.

Statements are counted by a wrapper on psycopg's ``AsyncCursor.execute`` (every async statement of
this process goes through it), matching those that name the ``keypairs`` table.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import psycopg
import pytest

from services.common.settings import Settings
from services.gateway.app import GatewayApp
from services.gateway.main import build_app
from services.sdk.client import BerthClient
from tests.support.gateway import Keys, client_for, gateway, keys, read_models  # noqa: F401 - fixtures
from tests.support.tenancy import CREATE_KEYPAIR, refused

PING = "query { domains { name } }"
DEACTIVATE_KEYPAIR = "mutation($k: String!) { deactivateKeypair(accessKey: $k) { id } }"
DEACTIVATE_USER = "mutation($u: String!) { deactivateUser(name: $u) { id } }"
KEYPAIRS_TABLE = re.compile(r"\bkeypairs\b(?!_)", re.IGNORECASE)


class KeypairReads:
    """Counts the statements of this process that read the ``keypairs`` table."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.statements: list[str] = []
        execute = psycopg.AsyncCursor.execute

        async def counted(cursor: psycopg.AsyncCursor, query: Any, *args: Any, **kwargs: Any) -> Any:
            text = query if isinstance(query, str) else str(query)
            if KEYPAIRS_TABLE.search(text) and text.lstrip().upper().startswith("SELECT"):
                self.statements.append(text)
            return await execute(cursor, query, *args, **kwargs)

        monkeypatch.setattr(psycopg.AsyncCursor, "execute", counted)

    def __len__(self) -> int:
        return len(self.statements)


@pytest.fixture
def keypair_reads(monkeypatch: pytest.MonkeyPatch) -> KeypairReads:
    return KeypairReads(monkeypatch)


@pytest.fixture
async def second_gateway(read_models: str, keys: Keys) -> AsyncIterator[Callable[[tuple[str, str]], BerthClient]]:
    """Yields a factory of clients of a second gateway app on the same database."""
    app: GatewayApp = build_app(Settings(pg_dsn=read_models), read_wait=2.0)
    clients: list[BerthClient] = []

    def make(keypair: tuple[str, str]) -> BerthClient:
        client = BerthClient("http://gateway.test", *keypair, transport=httpx.ASGITransport(app=app))
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.aclose()
        await app.aclose()


async def test_a_warm_cache_reads_no_keypair(client_for, keys: Keys, keypair_reads: KeypairReads) -> None:
    alice = client_for(keys.alice)
    await alice.execute(PING)  # cold: the keypair is read once
    cold = len(keypair_reads)
    assert cold >= 1
    for _ in range(5):
        await alice.execute(PING)
    assert len(keypair_reads) == cold, keypair_reads.statements[cold:]


async def test_a_keypair_change_makes_the_cache_read_again(client_for, keys: Keys, keypair_reads: KeypairReads) -> None:
    alice, admin = client_for(keys.alice), client_for(keys.admin)
    await alice.execute(PING)
    await admin.execute(CREATE_KEYPAIR, {"u": "bob"})  # any change of the keypairs table raises the epoch
    before = len(keypair_reads)
    await alice.execute(PING)
    assert len(keypair_reads) == before + 1  # read again once, then warm again
    await alice.execute(PING)
    assert len(keypair_reads) == before + 1


async def test_deactivation_is_refused_at_the_next_request_of_every_gateway(client_for, second_gateway, keys: Keys) -> None:
    admin = client_for(keys.admin)
    spare = (await admin.execute(CREATE_KEYPAIR, {"u": "alice"}))["createKeypair"]
    spare_keys = (spare["accessKey"], spare["secretKey"])
    first, second = client_for(spare_keys), second_gateway(spare_keys)
    for _ in range(2):  # both caches warm
        await first.execute(PING)
        await second.execute(PING)
    await admin.execute(DEACTIVATE_KEYPAIR, {"k": spare["accessKey"]})
    assert (await refused(first, PING, {})).code == "UNAUTHENTICATED"
    assert (await refused(second, PING, {})).code == "UNAUTHENTICATED"
    await client_for(keys.alice).execute(PING)  # alice's other keypair still works


async def test_a_deactivated_user_is_refused_at_the_next_request_of_every_gateway(
    client_for, second_gateway, keys: Keys,
) -> None:
    first, second = client_for(keys.bob), second_gateway(keys.bob)
    for _ in range(2):
        await first.execute(PING)
        await second.execute(PING)
    await second_gateway(keys.admin).execute(DEACTIVATE_USER, {"u": "bob"})  # through the other gateway
    assert (await refused(first, PING, {})).code == "UNAUTHENTICATED"
    assert (await refused(second, PING, {})).code == "UNAUTHENTICATED"


async def test_a_new_keypair_works_at_once_on_every_gateway(client_for, second_gateway, keys: Keys) -> None:
    await client_for(keys.alice).execute(PING)
    await second_gateway(keys.alice).execute(PING)  # both warm before the keypair exists
    made = (await client_for(keys.admin).execute(CREATE_KEYPAIR, {"u": "alice"}))["createKeypair"]
    fresh = (made["accessKey"], made["secretKey"])
    await client_for(fresh).execute(PING)
    await second_gateway(fresh).execute(PING)
