"""Tenancy through GraphQL: creating and listing domains, projects, users, keypairs, policies and
resource groups, who may do what, and refusals that record nothing."""

from __future__ import annotations

import pytest

from services.sdk.client import BerthAPIError
from tests.support.gateway import (  # noqa: F401 - fixtures
    Keys, client_for, count_events, gateway, keys, read_models,
)
from tests.support.tenancy import (
    CREATE_DOMAIN, CREATE_KEYPAIR, CREATE_POLICY, CREATE_PROJECT, CREATE_RGROUP, CREATE_USER, Tenants, catch_up, refused,
)

LIST = """query { domains { name } projects { name domain } users { name domain role projects isActive }
  keypairs { accessKey user domain role resourcePolicy isActive } resourcePolicies { name }
  resourceGroups { name public domains } }"""


def names(rows: list[dict]) -> list[str]:
    return [row["name"] for row in rows]


@pytest.fixture
async def tenants(client_for, keys: Keys) -> Tenants:
    return Tenants(client_for(keys.admin), client_for)


async def test_create_and_list_what_each_role_sees(tenants: Tenants, client_for, keys: Keys, pg_dsn: str) -> None:
    carol, dave = await tenants.lab()
    admin = tenants.admin
    await admin.execute(CREATE_POLICY, {"i": {"name": "small", "maxPendingSessionCount": 2,
                                               "totalResourceSlots": [{"slot": "mem", "amount": "16g"}]}})
    await admin.execute(CREATE_RGROUP, {"i": {"name": "gpu", "public": False, "domains": ["lab"], "scheduler": "drf"}})
    catch_up(pg_dsn)

    everything = await admin.execute(LIST)
    assert names(everything["domains"]) == ["default", "lab"]
    assert names(everything["users"]) == ["admin", "alice", "bob", "carol", "dave"]
    assert names(everything["resourcePolicies"]) == ["default", "small"]
    assert [(g["name"], g["public"], g["domains"]) for g in everything["resourceGroups"]] == [
        ("default", True, []), ("gpu", False, ["lab"])]

    lab_admin = await carol.execute(LIST)
    assert names(lab_admin["domains"]) == ["lab"] and names(lab_admin["projects"]) == ["ml"]
    assert [(u["name"], u["role"]) for u in lab_admin["users"]] == [("carol", "admin"), ("dave", "user")]
    assert {k["user"] for k in lab_admin["keypairs"]} == {"carol", "dave"}
    assert names(lab_admin["resourceGroups"]) == ["default", "gpu"]

    user = await dave.execute(LIST)
    assert [(u["name"], u["projects"], u["isActive"]) for u in user["users"]] == [("dave", ["ml"], True)]
    assert [(k["accessKey"], k["domain"], k["role"], k["resourcePolicy"]) for k in user["keypairs"]] == [
        (tenants.keys["dave"][0], "lab", "user", "default")]
    assert names(user["projects"]) == ["ml"] and names(user["resourcePolicies"]) == ["default"]
    assert names(user["resourceGroups"]) == ["default", "gpu"]

    outsider = await client_for(keys.alice).execute(LIST)
    assert names(outsider["domains"]) == ["default"] and names(outsider["resourceGroups"]) == ["default"]
    assert names(outsider["users"]) == ["alice"] and names(outsider["projects"]) == ["default"]


async def test_a_new_keypair_authenticates_and_its_secret_is_shown_once(tenants: Tenants, pg_dsn: str) -> None:
    await tenants.lab()
    created = (await tenants.admin.execute(CREATE_KEYPAIR, {"u": "dave"}))["createKeypair"]
    assert created["accessKey"].startswith("AKIA") and len(created["secretKey"]) == 40
    client = tenants.make((created["accessKey"], created["secretKey"]))
    me = (await client.execute("query($p: Int) { keypairs(afterPosition: $p) { accessKey role } }",
                               {"p": catch_up(pg_dsn)}))["keypairs"]
    assert {k["accessKey"] for k in me} == {created["accessKey"], tenants.keys["dave"][0]}
    assert "secretKey" not in str(await tenants.admin.execute("query { keypairs { accessKey user } }"))


async def test_deactivated_user_and_keypair_stop_authenticating(tenants: Tenants, pg_dsn: str) -> None:
    carol, dave = await tenants.lab()
    spare = (await carol.execute(CREATE_KEYPAIR, {"u": "dave"}))["createKeypair"]
    await carol.execute("mutation($k: String!) { deactivateKeypair(accessKey: $k) { id } }", {"k": spare["accessKey"]})
    gone = await refused(tenants.make((spare["accessKey"], spare["secretKey"])), "query { domains { name } }", {})
    assert gone.code == "UNAUTHENTICATED"
    await dave.execute("query { domains { name } }")  # still fine
    await carol.execute("mutation { deactivateUser(name: \"dave\") { id position } }")
    assert (await refused(dave, "query { domains { name } }", {})).code == "UNAUTHENTICATED"
    catch_up(pg_dsn)
    users = (await tenants.admin.execute("query { users(domain: \"lab\") { name isActive } }"))["users"]
    assert users == [{"name": "carol", "isActive": True}, {"name": "dave", "isActive": False}]
    keypairs = (await tenants.admin.execute("query { keypairs(user: \"dave\") { isActive } }"))["keypairs"]
    assert [k["isActive"] for k in keypairs] == [False, False]


async def test_only_a_superadmin_assigns_policies(tenants: Tenants, pg_dsn: str) -> None:
    carol, _ = await tenants.lab()
    await tenants.admin.execute(CREATE_POLICY, {"i": {"name": "small", "maxContainersPerSession": 1}})
    set_policy = "mutation($k: String!, $p: String!) { setKeypairPolicy(accessKey: $k, resourcePolicy: $p) { position } }"
    before = count_events(pg_dsn)
    for key in (tenants.keys["dave"][0], tenants.keys["carol"][0]):  # a domain admin: not even its own
        denied = await refused(carol, set_policy, {"k": key, "p": "small"})
        assert (denied.code, "only a superadmin may assign resource policies" in denied.message) == ("FORBIDDEN", True)
    denied = await refused(carol, CREATE_KEYPAIR, {"u": "dave", "p": "small"})
    assert denied.code == "FORBIDDEN" and "only a superadmin may assign resource policies" in denied.message
    assert count_events(pg_dsn) == before, "nothing recorded"
    await carol.execute(CREATE_KEYPAIR, {"u": "dave"})  # the default policy: a domain admin may

    position = (await tenants.admin.execute(set_policy, {"k": tenants.keys["dave"][0], "p": "small"}))[
        "setKeypairPolicy"]["position"]
    catch_up(pg_dsn)
    rows = (await carol.execute("query($p: Int) { keypairs(user: \"dave\", afterPosition: $p) { resourcePolicy } }",
                                {"p": position}))["keypairs"]
    assert sorted(r["resourcePolicy"] for r in rows) == ["default", "small"]
    missing = await refused(tenants.admin, set_policy, {"k": tenants.keys["dave"][0], "p": "ghost"})
    assert (missing.code, missing.message) == ("BAD_INPUT", "resource policy ghost does not exist")


@pytest.mark.parametrize("who, document, variables, code, fragment", [
    ("alice", CREATE_PROJECT, {"i": {"name": "p2"}}, "FORBIDDEN", "only an admin may create projects"),
    ("alice", CREATE_KEYPAIR, {"u": "alice"}, "FORBIDDEN", "only an admin"),
    ("carol", CREATE_DOMAIN, {"i": {"name": "d2"}}, "FORBIDDEN", "only a superadmin may create domains"),
    ("carol", CREATE_POLICY, {"i": {"name": "p"}}, "FORBIDDEN", "only a superadmin"),
    ("carol", CREATE_RGROUP, {"i": {"name": "g"}}, "FORBIDDEN", "only a superadmin"),
    ("carol", CREATE_PROJECT, {"i": {"name": "p2", "domain": "default"}}, "FORBIDDEN", "domain default"),
    ("carol", CREATE_USER, {"i": {"name": "root2", "role": "superadmin"}}, "FORBIDDEN", "superadmins"),
    ("carol", CREATE_USER, {"i": {"name": "eve", "domain": "default"}}, "FORBIDDEN", "domain default"),
    ("carol", "mutation { deactivateUser(name: \"alice\") { id } }", {}, "NOT_FOUND", "user alice not found"),
    ("carol", CREATE_KEYPAIR, {"u": "admin"}, "NOT_FOUND", "user admin not found"),
    ("carol", "mutation { updateProject(input: {name: \"default\"}) { id } }", {}, "NOT_FOUND", "project default"),
    ("carol", "mutation { deactivateUser(name: \"carol\") { id } }", {}, "BAD_INPUT", "yourself"),
    ("admin", CREATE_DOMAIN, {"i": {"name": "bad name"}}, "BAD_INPUT", "invalid domain name"),
    ("admin", CREATE_DOMAIN, {"i": {"name": "lab"}}, "CONFLICT", "domain lab already exists"),
    ("admin", CREATE_PROJECT, {"i": {"name": "p2", "domain": "nowhere"}}, "BAD_INPUT", "domain nowhere does not exist"),
    ("admin", CREATE_USER, {"i": {"name": "eve", "domain": "lab", "projects": ["default"]}}, "BAD_INPUT",
     "belongs to domain default"),
    ("admin", CREATE_KEYPAIR, {"u": "ghost"}, "NOT_FOUND", "user ghost not found"),
    ("admin", CREATE_KEYPAIR, {"u": "dave", "p": "ghost"}, "BAD_INPUT", "resource policy ghost does not exist"),
    ("admin", CREATE_POLICY, {"i": {"name": "p", "maxConcurrentSessions": -1}}, "BAD_INPUT", "non-negative"),
    ("admin", CREATE_POLICY, {"i": {"name": "p", "totalResourceSlots": [{"slot": "mem", "amount": "x"}]}},
     "BAD_INPUT", "cannot parse amount"),
    ("admin", CREATE_RGROUP, {"i": {"name": "g", "scheduler": "random"}}, "BAD_INPUT", "unknown scheduler"),
    ("admin", CREATE_RGROUP, {"i": {"name": "g", "keypairs": ["AKIAGHOST"]}}, "BAD_INPUT", "keypair AKIAGHOST"),
    ("admin", "mutation { updateDomain(input: {name: \"lab\"}) { id } }", {}, "BAD_INPUT", "nothing to update"),
    ("admin", "mutation { updateResourceGroup(input: {name: \"ghost\"}) { id } }", {}, "NOT_FOUND",
     "resource group ghost not found"),
])
async def test_refusals_record_nothing(tenants: Tenants, client_for, keys: Keys, pg_dsn: str, who: str, document: str,
                                       variables: dict, code: str, fragment: str) -> None:
    carol, _ = await tenants.lab()
    client = {"alice": client_for(keys.alice), "carol": carol, "admin": tenants.admin}[who]
    before = count_events(pg_dsn)
    error = await refused(client, document, variables)
    assert (error.code, fragment in error.message) == (code, True), error.message
    assert count_events(pg_dsn) == before


async def test_lab_admin_creates_in_its_domain_by_default(tenants: Tenants, pg_dsn: str) -> None:
    carol, _ = await tenants.lab()
    await carol.execute(CREATE_PROJECT, {"i": {"name": "cv"}})
    await carol.execute(CREATE_USER, {"i": {"name": "erin", "projects": ["cv", "ml"]}})
    created = (await carol.execute(CREATE_KEYPAIR, {"u": "erin"}))["createKeypair"]
    catch_up(pg_dsn)
    rows = (await carol.execute("query { users { name domain projects } projects { name domain } }"))
    assert {"name": "erin", "domain": "lab", "projects": ["cv", "ml"]} in rows["users"]
    assert rows["projects"] == [{"name": "cv", "domain": "lab"}, {"name": "ml", "domain": "lab"}]
    try:
        await tenants.make((created["accessKey"], created["secretKey"])).execute(CREATE_PROJECT, {"i": {"name": "x"}})
    except BerthAPIError as exc:
        assert exc.code == "FORBIDDEN"
    else:
        raise AssertionError("a user created a project")


async def test_quotas_are_updated_and_removed(tenants: Tenants, pg_dsn: str) -> None:
    carol, _ = await tenants.lab()
    update_project = "mutation($s: [SlotInput!]) { updateProject(input: {name: \"ml\", totalResourceSlots: $s}) { position } }"
    await carol.execute(update_project, {"s": [{"slot": "cpu", "amount": "4"}, {"slot": "mem", "amount": "8g"}]})
    update_domain = "mutation($s: [SlotInput!]) { updateDomain(input: {name: \"lab\", totalResourceSlots: $s}) { position } }"
    await tenants.admin.execute(update_domain, {"s": [{"slot": "cuda.device", "amount": "2"}]})
    catch_up(pg_dsn)
    rows = await carol.execute("query { domains { totalResourceSlots version } projects { totalResourceSlots } }")
    assert rows["domains"] == [{"totalResourceSlots": {"cuda.device": "2"}, "version": 2}]
    assert rows["projects"] == [{"totalResourceSlots": {"cpu": "4", "mem": str(8 * 1024**3)}}]
    await carol.execute(update_project, {"s": []})
    catch_up(pg_dsn)
    assert (await carol.execute("query { projects { totalResourceSlots } }"))["projects"] == [{"totalResourceSlots": {}}]
