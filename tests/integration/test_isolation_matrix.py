"""The tenant-isolation matrix: every query, mutation and subscription field of the schema (read
from the schema itself) × every caller of ``tests.support.isolation.ACTORS``, run against one real
gateway (uvicorn, real PostgreSQL and NATS), each cell checked against its rule.

A field of the schema without a rule in ``RULES`` fails; so does a rule for a field the schema no
longer has. Adding a rule is one line: the document, the expected outcome of each caller, and,
when the cell needs them, the variables and what in the answer is the owner's object.

Outcomes, one letter per caller (owner, peer, admin, foreign, superadmin, deactivated):

* ``A`` allowed: data, and the owner's object is in it;
* ``H`` hidden: data, and the owner's object is not in it (a list narrowed to the caller, a null);
* ``C`` the tenant check passed, the operation is refused for the session's state (CONFLICT: the
  session is not RUNNING, no agent runs here);
* ``N`` NOT_FOUND, ``F`` FORBIDDEN, ``U`` UNAUTHENTICATED;
* ``V`` the tenant check passed and the gateway went on to the storage service, which the world's
  gateway cannot reach (UNAVAILABLE): the file operations of folders.

Every outcome but ``A`` must record nothing (the event store's count is unchanged). Filters name the
owner's objects outright (``sessions(owner:)``, ``users(domain:)``, ...), as an attacker would.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from contracts.storage_reports import FolderProvisionedReport
from services.application.context import make_context
from services.application.vfolders import VFolders, report_context_id
from services.gateway.schema import build_schema
from services.sdk.client import BerthAPIError, BerthClient
from tests.support.gateway import CREATE
from tests.support.isolation import ACTORS, World, tenant_world
from tests.support.tenancy import (
    CREATE_DOMAIN, CREATE_KEYPAIR, CREATE_POLICY, CREATE_PROJECT, CREATE_RGROUP, CREATE_USER,
)

Variables = Callable[[World], "dict[str, Any] | Awaitable[dict[str, Any]]"]
CODES = {"CONFLICT": "C", "NOT_FOUND": "N", "FORBIDDEN": "F", "UNAUTHENTICATED": "U", "UNAVAILABLE": "V"}
SUBSCRIPTION_WAIT = 20.0


def _no_variables(world: World) -> dict[str, Any]:
    return {}


def _the_session(world: World) -> dict[str, Any]:
    return {"id": world.session_id}


def _any_data(data: Any, world: World) -> bool:
    return bool(data)


@dataclass(frozen=True)
class Rule:
    """How one field is tried: ``expect`` holds one outcome letter per caller of ``ACTORS``."""

    document: str
    expect: str
    variables: Variables = _no_variables
    shows: Callable[[Any, World], bool] = _any_data


def _names(key: str, value: Callable[[World], str]) -> Callable[[Any, World], bool]:
    """Shows: the answer's list holds an item whose ``key`` is the owner's ``value``."""
    return lambda data, world: value(world) in {item[key] for item in data}


def _fresh(prefix: str, **fields: Any) -> Variables:
    return lambda world: {"i": {"name": world.fresh(prefix), **fields}}


async def _new_session(world: World) -> dict[str, Any]:
    return {"id": await world.owner_session()}


async def _new_keypair(world: World) -> dict[str, Any]:
    return {"k": await world.owner_keypair()}


async def _new_victim(world: World) -> dict[str, Any]:
    return {"n": await world.victim_user()}


async def _folder(world: World, *, cloneable: bool = True, shared_with: str | None = None,
                  trashed: bool = False) -> str:
    """Creates a ready folder of the owner's (as the storage service would report it); returns its id."""
    owner = world.clients["owner"]
    folder = (await owner.execute(CREATE_VFOLDER, {"i": {"name": world.fresh("f"), "cloneable": cloneable}}
                                  ))["createVFolder"]["id"]
    _storage_reports(world, folder)
    if shared_with is not None:
        await owner.execute(SHARE_VFOLDER, {"f": folder, "u": shared_with})
    if trashed:
        await owner.execute("mutation($f: String!) { trashVFolder(folder: $f) { id } }", {"f": folder})
    await world.settle()
    return folder


def _storage_reports(world: World, folder_id: str) -> None:
    report = FolderProvisionedReport(report_id=uuid.uuid4().hex, volume="local", folder_id=folder_id,
                                     observed_at=dt.datetime.now(dt.UTC))
    with VFolders(world.dsn) as app:
        app.apply_report(report, make_context("storage:local", causation_id=report_context_id(report)))


async def _the_folder(world: World) -> dict[str, Any]:
    """The owner's one cloneable folder of the world (made on first use)."""
    if not getattr(world, "folder_id", None):
        world.folder_id = await _folder(world)  # type: ignore[attr-defined]
    return {"f": world.folder_id}  # type: ignore[attr-defined]


async def _new_folder(world: World) -> dict[str, Any]:
    return {"f": await _folder(world)}


async def _new_trashed(world: World) -> dict[str, Any]:
    return {"f": await _folder(world, trashed=True)}


async def _new_shared(world: World) -> dict[str, Any]:
    return {"f": await _folder(world, shared_with="bob")}


async def _peers_shared(world: World) -> dict[str, Any]:
    """A folder of the peer's shared with the owner (what the owner may leave)."""
    peer = world.clients["peer"]
    folder = (await peer.execute(CREATE_VFOLDER, {"i": {"name": world.fresh("p")}}))["createVFolder"]["id"]
    _storage_reports(world, folder)
    await peer.execute(SHARE_VFOLDER, {"f": folder, "u": "alice"})
    await world.settle()
    return {"f": folder}


async def _invitation_to_owner(world: World) -> dict[str, Any]:
    """A pending invitation of the owner's, to a folder of the peer's."""
    peer = world.clients["peer"]
    folder = (await peer.execute(CREATE_VFOLDER, {"i": {"name": world.fresh("i")}}))["createVFolder"]["id"]
    _storage_reports(world, folder)
    invitation = (await peer.execute(INVITE_VFOLDER, {"f": folder, "u": "alice"}))["inviteToVFolder"]["id"]
    await world.settle()
    world.invitation_id = invitation  # type: ignore[attr-defined]
    return {"i": invitation}


async def _invitation_from_owner(world: World) -> dict[str, Any]:
    """A pending invitation of the peer's to a new folder of the owner's."""
    folder = await _folder(world)
    invited = await world.clients["owner"].execute(INVITE_VFOLDER, {"f": folder, "u": "bob"})
    await world.settle()
    return {"f": folder, "i": invited["inviteToVFolder"]["id"]}


def _folder_shown(data: Any, world: World) -> bool:
    return world.folder_id in {item["id"] for item in data}  # type: ignore[attr-defined]


CREATE_VFOLDER = "mutation($i: CreateVFolderInput!) { createVFolder(input: $i) { id } }"
SHARE_VFOLDER = "mutation($f: String!, $u: String!) { shareVFolder(folder: $f, user: $u, permission: \"ro\") { id } }"
INVITE_VFOLDER = ("mutation($f: String!, $u: String!) { inviteToVFolder(folder: $f, user: $u, permission: \"ro\") "
                  "{ id } }")
F = "$f: String!"


ID = "$id: String!"
RULES: dict[str, Rule] = {
    # --- queries ---
    "Query.sessions": Rule("query($o: String) { sessions(owner: $o, first: 500) { edges { id } } }", "A H A H A U",
                           lambda w: {"o": w.owner_key},
                           shows=lambda data, w: w.session_id in {e["id"] for e in data["edges"]}),
    "Query.session": Rule(f"query({ID}) {{ session(id: $id) {{ id }} }}", "A H A H A U", _the_session,
                          shows=lambda data, w: data is not None and data["id"] == w.session_id),
    "Query.events": Rule("query($id: String) { events(aggregateId: $id) { aggregateId } }", "A H A H A U",
                         _the_session),
    "Query.agents": Rule("query { agents { id } }", "A A A A A U", shows=lambda data, w: isinstance(data, list)),
    "Query.sessionLogs": Rule(f"query({ID}) {{ sessionLogs(sessionId: $id) }}", "C N C N C U", _the_session),
    "Query.doctor": Rule("query { doctor { clean } }", "F F F F A U"),
    "Query.deadLetters": Rule("query { deadLetters { total } }", "F F F F A U"),
    "Query.deadLetter": Rule("query { deadLetter(seq: 999999) { seq } }", "F F F F N U"),
    "Query.domains": Rule("query { domains { name } }", "A A A H A U", shows=_names("name", lambda w: "default")),
    "Query.projects": Rule('query { projects(domain: "default") { name } }', "A A A H A U",
                           shows=_names("name", lambda w: "default")),
    "Query.users": Rule('query { users(domain: "default") { name } }', "A H A H A U",
                        shows=_names("name", lambda w: "alice")),
    "Query.keypairs": Rule('query { keypairs(user: "alice") { accessKey } }', "A H A H A U",
                           shows=_names("accessKey", lambda w: w.owner_key)),
    "Query.resourcePolicies": Rule("query { resourcePolicies { name } }", "A H A H A U",
                                   shows=_names("name", lambda w: w.policy)),
    "Query.resourceGroups": Rule("query { resourceGroups { name } }", "A A A H A U",
                                 shows=_names("name", lambda w: w.group)),
    "Query.quotaUsage": Rule("query { quotaUsage { scope name } }", "A H A H A U",
                             shows=_names("name", lambda w: w.owner_key)),
    "Query.vfolders": Rule("query { vfolders { id } }", "A H A H A U", _the_folder, shows=_folder_shown),
    "Query.vfolder": Rule(f"query({F}) {{ vfolder(folder: $f) {{ id }} }}", "A N A N A U", _the_folder),
    "Query.vfolderInvitations": Rule("query { vfolderInvitations { id } }", "A H H H H U", _invitation_to_owner,
                                     shows=lambda data, w: w.invitation_id in {i["id"] for i in data}),
    "Query.storageUsage": Rule('query { storageUsage(scopes: ["user:alice"]) { quotaScope } }', "A N A N A U"),
    "Query.vfolderUploadRoom": Rule(f"query({F}) {{ vfolderUploadRoom(folder: $f) }}", "A N F N F U", _the_folder,
                                    shows=lambda data, w: data is None or data >= 0),  # null: no limit applies
    "Query.vfolderFiles": Rule(f"query({F}) {{ vfolderFiles(folder: $f) {{ name }} }}", "V N F N F U", _the_folder),
    # --- mutations ---
    "Mutation.createSession": Rule(CREATE, "A A A A A U", lambda w: {"input": {}}),
    "Mutation.terminateSession": Rule(f"mutation({ID}) {{ terminateSession(sessionId: $id) {{ sessionId }} }}",
                                      "A N A N A U", _new_session),
    "Mutation.createDomain": Rule(CREATE_DOMAIN, "F F F F A U", _fresh("dom")),
    "Mutation.updateDomain": Rule("mutation($i: DomainInput!) { updateDomain(input: $i) { id } }", "F F F F A U",
                                  lambda w: {"i": {"name": "default", "totalResourceSlots": []}}),
    "Mutation.createProject": Rule(CREATE_PROJECT, "F F A F A U", _fresh("proj", domain="default")),
    "Mutation.updateProject": Rule("mutation($i: ProjectInput!) { updateProject(input: $i) { id } }", "F F A N A U",
                                   lambda w: {"i": {"name": "default", "totalResourceSlots": []}}),
    "Mutation.createUser": Rule(CREATE_USER, "F F A F A U", _fresh("user", domain="default")),
    "Mutation.replayDeadLetters": Rule('mutation { replayDeadLetters(consumer: "nobody") { done } }', "F F F F A U"),
    "Mutation.dropDeadLetters": Rule('mutation { dropDeadLetters(consumer: "nobody") { done } }', "F F F F A U"),
    "Mutation.deactivateUser": Rule("mutation($n: String!) { deactivateUser(name: $n) { id } }", "F F A N A U",
                                    _new_victim),
    # alice's keypair holds a policy a superadmin assigned: a domain admin's new (default) keypair would lift it
    "Mutation.createKeypair": Rule(CREATE_KEYPAIR, "F F F N A U", lambda w: {"u": "alice"}),
    "Mutation.deactivateKeypair": Rule("mutation($k: String!) { deactivateKeypair(accessKey: $k) { id } }",
                                       "F F A N A U", _new_keypair),
    "Mutation.setKeypairPolicy": Rule(
        "mutation($k: String!, $p: String!) { setKeypairPolicy(accessKey: $k, resourcePolicy: $p) { id } }",
        "F F F F A U", lambda w: {"k": w.owner_key, "p": w.policy}),
    "Mutation.createResourcePolicy": Rule(CREATE_POLICY, "F F F F A U", _fresh("pol")),
    "Mutation.updateResourcePolicy": Rule(
        "mutation($i: ResourcePolicyInput!) { updateResourcePolicy(input: $i) { id } }", "F F F F A U",
        lambda w: {"i": {"name": w.policy, "maxConcurrentSessions": 30}}),
    "Mutation.createResourceGroup": Rule(CREATE_RGROUP, "F F F F A U", _fresh("rg")),
    "Mutation.createVFolder": Rule(CREATE_VFOLDER, "A A A A A U", _fresh("vf")),
    "Mutation.cloneVFolder": Rule("mutation($f: String!, $n: String!) { cloneVFolder(folder: $f, name: $n) { id } }",
                                  "A N F N F U", lambda w: _with_name(w, _the_folder)),
    "Mutation.renameVFolder": Rule("mutation($f: String!, $n: String!) { renameVFolder(folder: $f, name: $n) { id } }",
                                   "A N A N A U", lambda w: _with_name(w, _new_folder)),
    "Mutation.trashVFolder": Rule(f"mutation({F}) {{ trashVFolder(folder: $f) {{ id }} }}", "A N A N A U", _new_folder),
    "Mutation.restoreVFolder": Rule(f"mutation({F}) {{ restoreVFolder(folder: $f) {{ id }} }}", "A N A N A U",
                                    _new_trashed),
    "Mutation.purgeVFolder": Rule(f"mutation({F}) {{ purgeVFolder(folder: $f) {{ id }} }}", "A N A N A U",
                                  _new_trashed),
    "Mutation.shareVFolder": Rule(SHARE_VFOLDER, "A N A N A U", lambda w: _with_user(w, _new_folder)),
    "Mutation.unshareVFolder": Rule("mutation($f: String!, $u: String!) { unshareVFolder(folder: $f, user: $u) { id } }",
                                    "A F A N A U", lambda w: _with_user(w, _new_shared)),
    "Mutation.setVFolderPermission": Rule(
        'mutation($f: String!, $u: String!) { setVFolderPermission(folder: $f, user: $u, permission: "rw") { id } }',
        "A F A N A U", lambda w: _with_user(w, _new_shared)),
    "Mutation.setVFolderQuota": Rule(f"mutation({F}) {{ setVFolderQuota(folder: $f, limitBytes: 1000) {{ id }} }}",
                                     "F N A N A U", _new_folder),
    "Mutation.inviteToVFolder": Rule(INVITE_VFOLDER, "A N A N A U", lambda w: _with_user(w, _new_folder)),
    "Mutation.acceptVFolderInvitation": Rule(
        "mutation($i: String!) { acceptVFolderInvitation(invitationId: $i) { id } }", "A N N N N U",
        _invitation_to_owner),
    "Mutation.rejectVFolderInvitation": Rule(
        "mutation($i: String!) { rejectVFolderInvitation(invitationId: $i) { id } }", "A N N N N U",
        _invitation_to_owner),
    "Mutation.withdrawVFolderInvitation": Rule(
        f"mutation({F}, $i: String!) {{ withdrawVFolderInvitation(folder: $f, invitationId: $i) {{ id }} }}",
        "A N A N A U", _invitation_from_owner),
    "Mutation.leaveVFolder": Rule(f"mutation({F}) {{ leaveVFolder(folder: $f) {{ id }} }}", "A C C N C U",
                                  _peers_shared),
    "Mutation.setProjectStorageLimit": Rule(
        'mutation { setProjectStorageLimit(project: "default", limitBytes: 1000000) { id } }', "F F A N A U"),
    "Mutation.requestUpload": Rule(
        f'mutation({F}) {{ requestUpload(folder: $f, path: "a.txt", size: 1) {{ token }} }}', "A N F N F U",
        _the_folder),
    "Mutation.requestDownload": Rule(f'mutation({F}) {{ requestDownload(folder: $f, path: "a.txt") {{ token }} }}',
                                     "A N F N F U", _the_folder),
    "Mutation.requestArchive": Rule(f"mutation({F}) {{ requestArchive(folder: $f) {{ token }} }}", "A N F N F U",
                                    _the_folder),
    "Mutation.vfolderMkdir": Rule(f'mutation({F}) {{ vfolderMkdir(folder: $f, path: "d") {{ id }} }}',
                                  "V N F N F U", _the_folder),
    "Mutation.vfolderMove": Rule(f'mutation({F}) {{ vfolderMove(folder: $f, src: "a", dst: "b") {{ id }} }}',
                                 "V N F N F U", _the_folder),
    "Mutation.vfolderDeleteFiles": Rule(f'mutation({F}) {{ vfolderDeleteFiles(folder: $f, paths: ["a"]) {{ id }} }}',
                                        "V N F N F U", _the_folder),
    "Mutation.updateResourceGroup": Rule(
        "mutation($i: ResourceGroupInput!) { updateResourceGroup(input: $i) { id } }", "F F F F A U",
        lambda w: {"i": {"name": w.group, "public": False}}),
    # --- subscriptions ---
    "Subscription.sessionEvents": Rule(f"subscription({ID}) {{ sessionEvents(sessionId: $id) {{ aggregateId }} }}",
                                       "A N A N A U", _the_session),
    "Subscription.sessionStatus": Rule(f"subscription({ID}) {{ sessionStatus(sessionId: $id) {{ status }} }}",
                                       "A N A N A U", _the_session),
    "Subscription.vfolderEvents": Rule(f"subscription({F}) {{ vfolderEvents(folder: $f) {{ type }} }}",
                                       "A N A N A U", _the_folder),
    "Mutation.interruptExecution": Rule(f'mutation({ID}) {{ interruptExecution(sessionId: $id, runId: "{"0" * 32}") }}',
                                        "C N C N C U", _the_session),
    "Subscription.execute": Rule(f'subscription({ID}) {{ execute(sessionId: $id, code: "1") {{ kind }} }}',
                                 "C N C N C U", _the_session),
}


async def _with_name(world: World, folder: Callable[[World], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    return {**await folder(world), "n": world.fresh("n")}


async def _with_user(world: World, folder: Callable[[World], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    return {**await folder(world), "u": "bob"}


def schema_fields() -> list[str]:
    """Returns every root field of the gateway's schema as ``Type.field``."""
    schema = build_schema()._schema
    roots = (schema.query_type, schema.mutation_type, schema.subscription_type)
    return sorted(f"{root.name}.{name}" for root in roots if root is not None for name in root.fields)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(pg_admin_dsn: str, nats_url: str) -> AsyncIterator[World]:
    async with tenant_world(pg_admin_dsn, nats_url) as built:
        yield built


async def _first_item(client: BerthClient, document: str, variables: dict[str, Any]) -> dict[str, Any]:
    async with asyncio.timeout(SUBSCRIPTION_WAIT):
        async for data in client.subscribe(document, variables):
            return data
    raise AssertionError("the subscription ended without an item")


async def _answer(client: BerthClient, field: str, rule: Rule, variables: dict[str, Any]) -> dict[str, Any]:
    if field.startswith("Subscription."):
        return await _first_item(client, rule.document, variables)
    return await client.execute(rule.document, variables)


async def run_cell(world: World, field: str, rule: Rule, actor: str) -> str:
    """Returns the outcome letter of one cell; a refusal that recorded something is marked ``!``."""
    variables = rule.variables(world)
    variables = await variables if inspect.isawaitable(variables) else variables
    before = world.events()
    try:
        data = await _answer(world.clients[actor], field, rule, variables)
    except BerthAPIError as exc:
        letter = CODES.get(exc.code, f"?{exc.code}")
    else:
        letter = "A" if rule.shows(data[field.split(".")[1]], world) else "H"
    if letter != "A" and world.events() != before:
        letter += "!"
    return letter


def test_every_schema_field_has_a_rule() -> None:
    fields = set(schema_fields())
    assert not fields - set(RULES), f"schema fields without an isolation rule: {sorted(fields - set(RULES))}"
    assert not set(RULES) - fields, f"rules for fields the schema lacks: {sorted(set(RULES) - fields)}"
    assert all(len(rule.expect.split()) == len(ACTORS) for rule in RULES.values())


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("field", schema_fields())
async def test_cells(world: World, field: str) -> None:
    rule = RULES.get(field)
    if rule is None:
        pytest.fail(f"{field} has no isolation rule: add one to RULES")
    await world.settle()  # the read models and the stream hold what earlier cells recorded
    got = [await run_cell(world, field, rule, actor) for actor in ACTORS]
    assert " ".join(got) == rule.expect, f"{field}: got {dict(zip(ACTORS, got))}, expected {rule.expect}"
