"""What a domain admin reads of a superadmin of its domain (through GraphQL, in the isolation matrix's world:
``tests.support.isolation``): that the user exists (``users``: name, role, projects, as in Backend.AI, where a domain
admin lists its domain's users whatever their role), nothing it holds: not its keypairs (``keypairs``, by user or
not), not its keypair's quota usage (``quotaUsage``), not a resource group only its keypair may use, nor its access
key in the ``keypairs`` a resource group is visible to (``resourceGroups``), not a resource policy only its keypair
holds (``resourcePolicies``: an admin sees the default policy and those of its domain's other keypairs), not its
folders' files or room (``vfolderFiles``, ``vfolderUploadRoom``). Its sessions, folders and storage scope are
``test_superadmin_reach``'s. A user or an admin sees of a resource group's domains, projects and keypairs only
those it may list itself.

The superadmin user ``admin`` lives in domain ``default``, whose admin is ``dana``. The superadmin keeps its full
reach; dana keeps hers over the domain's users."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from services.sdk.client import BerthClient
from tests.support.folders import seed_folder
from tests.support.gateway import CREATE
from tests.support.isolation import SET_POLICY, World, hold_quota, tenant_world
from tests.support.tenancy import CREATE_POLICY, CREATE_RGROUP, refused

pytestmark = pytest.mark.asyncio(loop_scope="module")

USERS = "query { users { name role } }"
KEYPAIRS = "query($u: String) { keypairs(user: $u) { accessKey user } }"
USAGE = "query { quotaUsage { scope name } }"
GROUPS = "query { resourceGroups { name keypairs } }"
GROUP_LISTS = "query { resourceGroups { name domains projects keypairs } }"
POLICIES = "query { resourcePolicies { name } }"
FOLDER_READS = {"vfolderFiles": "query($f: String!) { vfolderFiles(folder: $f) { name } }",
                "vfolderUploadRoom": "query($f: String!) { vfolderUploadRoom(folder: $f) }"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(pg_admin_dsn: str, nats_url: str) -> AsyncIterator[World]:
    async with tenant_world(pg_admin_dsn, nats_url) as built:
        yield built


def superadmin_key(world: World) -> str:
    return world.keys["superadmin"][0]


async def _listed(client: BerthClient, document: str, field: str, key: str,
                  variables: dict[str, Any] | None = None) -> list[str]:
    return [item[key] for item in (await client.execute(document, variables))[field]]


async def test_a_domain_admin_lists_a_superadmin_user_of_its_domain_but_none_of_its_keypairs(world: World) -> None:
    admin, superadmin, su_key = world.clients["admin"], world.clients["superadmin"], superadmin_key(world)
    users = {u["name"]: u["role"] for u in (await admin.execute(USERS))["users"]}
    assert users["admin"] == "superadmin" and users["alice"] == "user"
    assert su_key not in await _listed(admin, KEYPAIRS, "keypairs", "accessKey")
    assert await _listed(admin, KEYPAIRS, "keypairs", "accessKey", {"u": "admin"}) == []
    assert world.owner_key in await _listed(admin, KEYPAIRS, "keypairs", "accessKey", {"u": "alice"})
    assert su_key in await _listed(superadmin, KEYPAIRS, "keypairs", "accessKey", {"u": "admin"})


async def test_a_domain_admin_does_not_read_a_superadmins_quota_usage(world: World) -> None:
    su_key = superadmin_key(world)
    session = (await world.clients["superadmin"].execute(CREATE, {"input": {}}))["createSession"]["sessionId"]
    await world.settle()
    hold_quota(world.dsn, su_key, session)
    admin_sees = await _listed(world.clients["admin"], USAGE, "quotaUsage", "name")
    assert su_key not in admin_sees and world.owner_key in admin_sees
    assert {su_key, world.owner_key} <= set(await _listed(world.clients["superadmin"], USAGE, "quotaUsage", "name"))


async def test_a_domain_admin_does_not_read_a_superadmins_resource_groups(world: World) -> None:
    superadmin, su_key = world.clients["superadmin"], superadmin_key(world)
    mine, shared = world.fresh("su-only"), world.fresh("su-and-alice")
    await superadmin.execute(CREATE_RGROUP, {"i": {"name": mine, "public": False, "keypairs": [su_key]}})
    await superadmin.execute(CREATE_RGROUP, {"i": {"name": shared, "public": False,
                                                   "keypairs": [su_key, world.owner_key]}})
    await world.settle()
    groups = {g["name"]: g["keypairs"] for g in (await world.clients["admin"].execute(GROUPS))["resourceGroups"]}
    assert mine not in groups and groups[shared] == [world.owner_key], groups
    everything = {g["name"]: g["keypairs"] for g in (await superadmin.execute(GROUPS))["resourceGroups"]}
    assert everything[mine] == [su_key] and sorted(everything[shared]) == sorted([su_key, world.owner_key])


async def test_a_domain_admin_does_not_read_a_policy_only_a_superadmin_holds(world: World) -> None:
    superadmin, policy = world.clients["superadmin"], world.fresh("su-policy")
    await superadmin.execute(CREATE_POLICY, {"i": {"name": policy}})
    await superadmin.execute(SET_POLICY, {"k": superadmin_key(world), "p": policy})
    await world.settle()
    admin_sees = await _listed(world.clients["admin"], POLICIES, "resourcePolicies", "name")
    assert policy not in admin_sees and {"default", world.policy} <= set(admin_sees), admin_sees
    foreign_sees = await _listed(world.clients["foreign"], POLICIES, "resourcePolicies", "name")
    assert world.policy not in foreign_sees and "default" in foreign_sees, "another domain's keypairs' policies"
    assert {policy, world.policy} <= set(await _listed(superadmin, POLICIES, "resourcePolicies", "name"))


async def test_a_resource_group_shows_only_the_tenants_its_reader_may_list(world: World) -> None:
    superadmin, name = world.clients["superadmin"], world.fresh("public")
    keypairs = [superadmin_key(world), world.owner_key, world.keys["peer"][0], world.keys["foreign"][0]]
    await superadmin.execute(CREATE_RGROUP, {"i": {"name": name, "domains": ["default", "lab"], "projects": ["ml"],
                                                   "keypairs": keypairs}})
    await world.settle()

    async def seen_by(actor: str) -> dict[str, Any]:
        groups = (await world.clients[actor].execute(GROUP_LISTS))["resourceGroups"]
        group = next(g for g in groups if g["name"] == name)
        return {"domains": group["domains"], "projects": group["projects"], "keypairs": sorted(group["keypairs"])}

    assert await seen_by("owner") == {"domains": ["default"], "projects": [], "keypairs": [world.owner_key]}
    assert await seen_by("admin") == {"domains": ["default"], "projects": [],
                                      "keypairs": sorted([world.owner_key, world.keys["peer"][0]])}
    assert await seen_by("foreign") == {"domains": ["lab"], "projects": ["ml"], "keypairs": [world.keys["foreign"][0]]}
    assert await seen_by("superadmin") == {"domains": ["default", "lab"], "projects": ["ml"],
                                           "keypairs": sorted(keypairs)}


async def test_a_domain_admin_does_not_read_a_superadmins_folder_files_or_room(world: World) -> None:
    folder = seed_folder(world.dsn, world.fresh("su-files"), owner="admin")
    await world.settle()
    for query, document in FOLDER_READS.items():
        assert (await refused(world.clients["admin"], document, {"f": folder})).code == "NOT_FOUND", query
