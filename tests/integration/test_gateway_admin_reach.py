"""How far a domain admin reaches with keypairs, through GraphQL: it issues keypairs in its domain (with
the default policy) but never one that lifts the resource policy a superadmin assigned, its own included,
nor one that outlives the deactivation of its user (issued while that user was being deactivated)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import psycopg
import pytest

from contracts.tenancy_commands import CreateKeypair
from services.application.tenancy import Tenancy
from services.sdk.client import BerthAPIError
from tests.support.gateway import (  # noqa: F401 - fixtures
    Keys, client_for, count_events, gateway, keys, read_models,
)
from tests.support.tenancy import CREATE_KEYPAIR, CREATE_POLICY, Tenants, catch_up, refused
from tests.support.waiting import async_wait_for

SET_POLICY = "mutation($k: String!, $p: String!) { setKeypairPolicy(accessKey: $k, resourcePolicy: $p) { position } }"
DEACTIVATE_KEYPAIR = "mutation($k: String!) { deactivateKeypair(accessKey: $k) { id } }"
DEACTIVATE_USER = "mutation($n: String!) { deactivateUser(name: $n) { id } }"


@pytest.fixture
async def tenants(client_for, keys: Keys) -> Tenants:
    return Tenants(client_for(keys.admin), client_for)


@pytest.mark.parametrize("user, deactivated_first", [("carol", False), ("dave", False), ("dave", True)])
async def test_a_domain_admin_cannot_lift_a_superadmin_policy_by_issuing_a_new_keypair(
        tenants: Tenants, pg_dsn: str, user: str, deactivated_first: bool) -> None:
    carol, _ = await tenants.lab()
    await tenants.admin.execute(CREATE_POLICY, {"i": {"name": "tight", "maxConcurrentSessions": 1, "rateLimit": 50}})
    await tenants.admin.execute(SET_POLICY, {"k": tenants.keys[user][0], "p": "tight"})
    if deactivated_first:  # the restricted keypair gone: the superadmin's choice for the user still stands
        await carol.execute(DEACTIVATE_KEYPAIR, {"k": tenants.keys[user][0]})
    before = count_events(pg_dsn)
    denied = await refused(carol, CREATE_KEYPAIR, {"u": user})  # it would get the default policy: no limits
    assert denied.code == "FORBIDDEN" and "'tight'" in denied.message, denied.message
    assert count_events(pg_dsn) == before, "nothing recorded"
    await tenants.admin.execute(CREATE_KEYPAIR, {"u": user})  # a superadmin still may


async def test_a_domain_admin_issues_keypairs_of_users_on_the_default_policy(tenants: Tenants) -> None:
    carol, _ = await tenants.lab()
    created = (await carol.execute(CREATE_KEYPAIR, {"u": "dave"}))["createKeypair"]
    assert created["accessKey"].startswith("AKIA")


def _lock_waiters(dsn: str) -> int:
    """Returns how many sessions of the test's database wait for a lock."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                            " AND wait_event_type = 'Lock'").fetchone()[0]


async def test_a_keypair_issued_while_its_user_is_deactivated_does_not_outlive_the_deactivation(
        tenants: Tenants, pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issuance is held between recording ``keypair.created`` (its user still active) and committing its
    row; a deactivation of the user meanwhile must not leave that keypair active."""
    carol, _ = await tenants.lab()
    recorded, release = threading.Event(), threading.Event()
    handle = Tenancy.handle

    def held_handle(self: Tenancy, aggregate_id: str, command: Any, ctx: Any) -> int:
        position = handle(self, aggregate_id, command, ctx)
        if isinstance(command, CreateKeypair):
            recorded.set()
            release.wait(30)
        return position

    monkeypatch.setattr(Tenancy, "handle", held_handle)
    issuing = asyncio.create_task(carol.execute(CREATE_KEYPAIR, {"u": "dave"}))
    assert await asyncio.to_thread(recorded.wait, 30), "the issuance did not record its event"
    deactivating = asyncio.create_task(tenants.admin.execute(DEACTIVATE_USER, {"n": "dave"}))

    async def deactivation_done_or_waiting() -> bool:  # for a lock the issuance holds (the keypair epoch's, the user's)
        return deactivating.done() or await asyncio.to_thread(_lock_waiters, pg_dsn) > 0

    await async_wait_for(deactivation_done_or_waiting, timeout=15)
    release.set()
    await deactivating
    try:
        created = (await issuing)["createKeypair"]
    except BerthAPIError:
        return  # refused: nothing issued
    gone = await refused(tenants.make((created["accessKey"], created["secretKey"])), "query { domains { name } }", {})
    assert gone.code == "UNAUTHENTICATED", "a keypair of a deactivated user still authenticates"
    catch_up(pg_dsn)
    rows = (await tenants.admin.execute("query { keypairs(user: \"dave\") { accessKey isActive } }"))["keypairs"]
    assert [row["isActive"] for row in rows if row["accessKey"] == created["accessKey"]] == [False]
