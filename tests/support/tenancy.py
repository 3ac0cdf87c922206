"""Helpers of the tenancy tests through the gateway (imported by test_gateway_tenancy*.py and
test_enqueue*.py): GraphQL documents, a projector stand-in, and a small tenant world.

``catch_up`` applies every event of the store that the read models have not seen yet,
through the projections' runner, as the projector would (stream sequence = position), so
these tests need no NATS and see exactly what a real projector writes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest

from contracts.subjects import event_subject
from projections.delivery import Delivery
from projections.runner import apply_batch
from services.sdk.client import BerthAPIError, BerthClient

__all__ = [
    "CREATE_DOMAIN", "CREATE_KEYPAIR", "CREATE_POLICY", "CREATE_PROJECT", "CREATE_RGROUP", "CREATE_USER",
    "SESSION", "SESSIONS", "Tenants", "catch_up", "projecting", "refused",
]

CREATE_DOMAIN = "mutation($i: DomainInput!) { createDomain(input: $i) { id position } }"
CREATE_PROJECT = "mutation($i: ProjectInput!) { createProject(input: $i) { id position } }"
CREATE_USER = "mutation($i: UserInput!) { createUser(input: $i) { id position } }"
CREATE_POLICY = "mutation($i: ResourcePolicyInput!) { createResourcePolicy(input: $i) { id position } }"
CREATE_RGROUP = "mutation($i: ResourceGroupInput!) { createResourceGroup(input: $i) { id position } }"
CREATE_KEYPAIR = ("mutation($u: String!, $p: String! = \"default\") {"
                  " createKeypair(user: $u, resourcePolicy: $p) { accessKey secretKey position } }")
SESSION = ("query($id: String!) { session(id: $id) { id owner domain project resourceGroup priority"
           " pendingCode pendingReason status } }")
SESSIONS = "query { sessions(first: 100) { edges { id owner domain } } }"


@pytest.fixture
async def projecting(pg_dsn: str) -> AsyncIterator[None]:
    """Projects new events every 50 ms while the test runs (what the projector service does)."""

    async def loop() -> None:
        while True:
            await asyncio.to_thread(catch_up, pg_dsn)
            await asyncio.sleep(0.05)

    task = asyncio.create_task(loop())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def catch_up(dsn: str) -> int:
    """Projects every stored event the read models lack; returns the position reached."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT position FROM projection_position WHERE projection = 'read_models'").fetchone()
        after = row[0] if row else 0
        stored = conn.execute(
            "SELECT notification_id, topic, originator_id, state FROM berth_events WHERE notification_id > %s"
            " ORDER BY notification_id", (after,)).fetchall()
        deliveries = [Delivery(nid, event_subject(topic, oid), nid, bytes(state)) for nid, topic, oid, state in stored]
        rejected: list[Any] = []
        result = apply_batch(conn, deliveries, on_reject=rejected.append)
    assert not rejected, rejected
    return result.position


async def refused(client: BerthClient, document: str, variables: dict[str, Any]) -> BerthAPIError:
    """Returns the error a request is refused with (fails when it is not refused)."""
    try:
        data = await client.execute(document, variables)
    except BerthAPIError as exc:
        return exc
    raise AssertionError(f"not refused: {data}")


class Tenants:
    """A second domain ``lab`` (project ``ml``) with its admin ``carol`` and user ``dave``, made through
    GraphQL by the superadmin; ``keys`` holds each new user's keypair."""

    def __init__(self, admin: BerthClient, make: Callable[[tuple[str, str]], BerthClient]) -> None:
        self.admin = admin
        self.make = make
        self.keys: dict[str, tuple[str, str]] = {}

    async def user(self, name: str, *, domain: str = "lab", role: str = "user", projects: list[str] | None = None,
                   policy: str = "default") -> BerthClient:
        """Creates a user and a keypair of theirs; returns a client of that keypair."""
        data: dict[str, Any] = {"name": name, "domain": domain, "role": role}
        if projects is not None:
            data["projects"] = projects
        await self.admin.execute(CREATE_USER, {"i": data})
        created = (await self.admin.execute(CREATE_KEYPAIR, {"u": name, "p": policy}))["createKeypair"]
        self.keys[name] = (created["accessKey"], created["secretKey"])
        return self.make(self.keys[name])

    async def lab(self) -> tuple[BerthClient, BerthClient]:
        """Creates domain lab, project ml, admin carol and user dave; returns their clients."""
        await self.admin.execute(CREATE_DOMAIN, {"i": {"name": "lab"}})
        await self.admin.execute(CREATE_PROJECT, {"i": {"name": "ml", "domain": "lab"}})
        carol = await self.user("carol", role="admin", projects=[])
        dave = await self.user("dave", projects=["ml"])
        return carol, dave
