"""The tenant world of the isolation matrix (tests/integration/test_isolation_matrix.py) and the
fuzzing tests: one real gateway (uvicorn, real PostgreSQL and NATS) per test module, and the six
callers every operation is tried as.

The target of every cell belongs to ``owner`` (user ``alice`` of domain ``default``): her session,
her keypair, a resource policy only her keypair has, a resource group only domain ``default`` may
use. The other callers are ``peer`` (user ``bob`` of the same domain), ``admin`` (``dana``, admin of
``default``), ``foreign`` (``carol``, admin of domain ``lab``), ``superadmin`` and ``deactivated``
(a second keypair of alice's, deactivated).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg

from services.common.settings import Settings
from services.sdk.client import BerthClient
from services.gateway.auth.keypairs import create_keypair, ensure_admin_keypair
from tests.support.gateway import CREATE, count_events, create_read_models, create_user, serving
from tests.support.infra import fresh_database
from tests.support.publish import fresh_bus, publish_from_store
from tests.support.tenancy import CREATE_DOMAIN, CREATE_POLICY, CREATE_PROJECT, CREATE_RGROUP, catch_up

__all__ = ["ACTORS", "UNREACHABLE_STORAGE", "World", "hold_quota", "tenant_world"]

UNREACHABLE_STORAGE = "http://127.0.0.1:9"
"""The storage URL of the world's gateway: the discard port, where nothing answers on loopback."""

ACTORS = ("owner", "peer", "admin", "foreign", "superadmin", "deactivated")
"""The callers of every cell, in the order of a rule's expectation string."""

SET_POLICY = "mutation($k: String!, $p: String!) { setKeypairPolicy(accessKey: $k, resourcePolicy: $p) { id } }"
DEACTIVATE_KEYPAIR = "mutation($k: String!) { deactivateKeypair(accessKey: $k) { id } }"


class World:
    """The callers (``clients[actor]``), the owner's objects, and fresh names and targets for cells
    that change something."""

    def __init__(self, dsn: str, url: str, keys: dict[str, tuple[str, str]]) -> None:
        self.dsn, self.url, self.keys = dsn, url, keys
        self.clients = {actor: BerthClient(url, *keypair) for actor, keypair in keys.items()}
        self.session_id = ""
        self.policy = "alice-only"
        self.group = "default-only"
        self._names = itertools.count(1)
        self._published = 0
        self.js: Any = None

    @property
    def owner_key(self) -> str:
        """The access key of the owner's (active) keypair."""
        return self.keys["owner"][0]

    def fresh(self, prefix: str) -> str:
        """Returns a name not used before in this world."""
        return f"{prefix}{next(self._names)}"

    def events(self) -> int:
        """Returns the number of events recorded so far."""
        return count_events(self.dsn)

    async def owner_session(self) -> str:
        """Creates a new session of the owner's; returns its id."""
        return (await self.clients["owner"].execute(CREATE, {"input": {}}))["createSession"]["sessionId"]

    async def owner_keypair(self) -> str:
        """Creates a new keypair of the owner's; returns its access key."""
        return create_keypair(self.dsn, "alice")[0]

    async def victim_user(self) -> str:
        """Creates a new user in the owner's domain; returns its name."""
        name = self.fresh("victim")
        create_user(self.dsn, name)
        return name

    async def settle(self) -> None:
        """Projects every recorded event into the read models and publishes it to the stream."""
        catch_up(self.dsn)
        self._published = await publish_from_store(self.js, self.dsn, self._published)

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()


def hold_quota(dsn: str, access_key: str, session_id: str) -> None:
    """Writes the quota usage of keypair ``access_key`` as the projector would once its session holds slots."""
    slots = json.dumps({"cpu": "1", "mem": "1073741824"})
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO quota_usage (quota_id, scope, name, slots, session_count, updated_at, version)"
            " VALUES (%s, 'keypair', %s, %s, 1, now(), 1)", (f"quota-keypair-{access_key}", access_key, slots))
        conn.execute("INSERT INTO quota_usage_sessions (quota_id, session_id, slots) VALUES (%s, %s, %s)",
                     (f"quota-keypair-{access_key}", session_id, slots))


async def _populate(world: World, superadmin: BerthClient) -> None:
    await superadmin.execute(CREATE_DOMAIN, {"i": {"name": "lab"}})
    await superadmin.execute(CREATE_PROJECT, {"i": {"name": "ml", "domain": "lab"}})
    await superadmin.execute(CREATE_POLICY, {"i": {"name": world.policy}})
    await superadmin.execute(SET_POLICY, {"k": world.owner_key, "p": world.policy})
    await superadmin.execute(CREATE_RGROUP, {"i": {"name": world.group, "public": False, "domains": ["default"]}})
    await superadmin.execute(DEACTIVATE_KEYPAIR, {"k": world.keys["deactivated"][0]})


@contextlib.asynccontextmanager
async def tenant_world(admin_dsn: str, nats_url: str) -> AsyncIterator[World]:
    """Yields the world on a database and a bus of its own, served by a real gateway."""
    with fresh_database(admin_dsn) as dsn:
        create_read_models(dsn)
        superadmin = ensure_admin_keypair(dsn)
        assert superadmin is not None
        for name, role in (("alice", "user"), ("bob", "user"), ("dana", "admin")):
            create_user(dsn, name, role=role)
        keys = {"owner": create_keypair(dsn, "alice"), "peer": create_keypair(dsn, "bob"),
                "admin": create_keypair(dsn, "dana"), "superadmin": superadmin,
                "deactivated": create_keypair(dsn, "alice")}
        key_dir = tempfile.TemporaryDirectory(prefix="berth-isolation-")
        key_file = Path(key_dir.name) / "storage.key"
        key_file.write_bytes(os.urandom(32))
        # storage tokens are minted with this key; the storage service's own URL answers nothing here
        # (the file operations of the matrix are UNAVAILABLE once their tenant check passed)
        settings = Settings(pg_dsn=dsn, nats_url=nats_url, gateway_host="127.0.0.1", gateway_port=0,
                            storage_url=UNREACHABLE_STORAGE, storage_key_file=str(key_file))
        async with fresh_bus(nats_url) as js, serving(settings) as url:
            world = World(dsn, url, keys)
            try:
                await _populate(world, world.clients["superadmin"])
                catch_up(dsn)
                create_user(dsn, "carol", role="admin", domain="lab", projects=("ml",))
                world.keys["foreign"] = create_keypair(dsn, "carol")
                world.clients["foreign"] = BerthClient(url, *world.keys["foreign"])
                world.session_id = await world.owner_session()
                world.js = js
                await world.settle()
                hold_quota(dsn, world.owner_key, world.session_id)
                yield world
            finally:
                await world.aclose()
                key_dir.cleanup()
