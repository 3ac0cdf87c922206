"""``berth admin`` and the new ``berth session create`` options, as subprocesses against a real
gateway; a stand-in projector (the projections' runner over the event store) keeps the read
models current, so the commands' read-your-writes waits finish."""

from __future__ import annotations


import pytest

from tests.support.cli import as_json, berth
from tests.support.gateway import (  # noqa: F401 - fixtures
    Keys, clean_streams, keys, read_models, served,
)
from tests.support.tenancy import projecting  # noqa: F401 - fixture

GIB = 1024**3


async def test_admin_commands_create_and_list(served: str, keys: Keys, projecting: None) -> None:
    admin = keys.admin
    domain = await as_json(served, admin, "admin", "domain", "create", "lab", "--total-slots", "cpu=8,mem=16g")
    assert domain["totalResourceSlots"] == {"cpu": "8", "mem": str(16 * GIB)}
    await berth(served, admin, "admin", "project", "create", "ml", "--domain", "lab", "--description", "models")
    user = await as_json(served, admin, "admin", "user", "create", "dave", "--domain", "lab", "-p", "ml")
    assert (user["domain"], user["role"], user["projects"], user["isActive"]) == ("lab", "user", ["ml"], True)
    policy = await as_json(served, admin, "admin", "policy", "create", "small", "--max-pending-sessions", "2",
                           "--max-pending-session-resource-slots", "mem=4g", "--max-containers-per-session", "1")
    assert (policy["maxPendingSessionCount"], policy["maxContainersPerSession"]) == (2, 1)
    assert policy["maxPendingSessionResourceSlots"] == {"mem": str(4 * GIB)}
    assert (policy["rateLimit"], policy["maxConcurrentSubscriptions"]) == (30000, 64)  # the defaults
    policy = await as_json(served, admin, "admin", "policy", "update", "small", "--idle-timeout", "600",
                           "--rate-limit", "900", "--max-concurrent-subscriptions", "4")
    assert (policy["idleTimeout"], policy["maxPendingSessionCount"]) == (600, 2)
    assert (policy["rateLimit"], policy["maxConcurrentSubscriptions"]) == (900, 4)
    created = await as_json(served, admin, "admin", "keypair", "create", "dave")
    dave = (created["accessKey"], created["secretKey"])
    row = await as_json(served, admin, "admin", "keypair", "set-policy", dave[0], "small")
    assert (row["user"], row["resourcePolicy"], row["domain"]) == ("dave", "small", "lab")
    group = await as_json(served, admin, "admin", "rgroup", "create", "gpu", "--scheduler", "drf", "--private",
                          "--domain", "lab", "--allowed-types", "interactive,batch", "--pending-timeout", "60")
    assert (group["scheduler"], group["public"], group["domains"], group["pendingTimeout"]) == ("drf", False, ["lab"], 60)
    group = await as_json(served, admin, "admin", "rgroup", "update", "gpu", "--selection", "concentrated")
    assert (group["agentSelection"], group["scheduler"]) == ("concentrated", "drf")
    users = await as_json(served, admin, "admin", "user", "ls", "--domain", "lab")
    assert [u["name"] for u in users] == ["dave"]
    assert [g["name"] for g in await as_json(served, dave, "admin", "rgroup", "ls")] == ["default", "gpu"]

    session = await as_json(served, dave, "session", "create", "--no-wait", "--project", "ml", "--priority", "5",
                            "--resource-group", "gpu", "-r", "mem=2g")
    assert (session["project"], session["priority"], session["resourceGroup"], session["domain"]) == (
        "ml", 5, "gpu", "lab")
    _, text, _ = await berth(served, dave, "session", "info", session["id"])
    assert "pending because" in text and "resource group" in text and "gpu" in text
    code, _, err = await berth(served, dave, "session", "create", "--no-wait", "--cluster-size", "2", ok=False)
    assert code == 1 and "QUOTA" in err and "at most 1 containers" in err
    code, _, err = await berth(served, dave, "admin", "domain", "create", "mine", ok=False)
    assert "FORBIDDEN: only a superadmin may create domains" in err

    await berth(served, admin, "admin", "user", "deactivate", "dave")
    code, _, err = await berth(served, dave, "admin", "domain", "ls", ok=False)
    assert "UNAUTHENTICATED" in err


async def test_bad_slot_option_is_a_usage_error(served: str, keys: Keys) -> None:
    code, _, err = await berth(served, keys.admin, "admin", "domain", "create", "x", "--total-slots", "cpu", ok=False)
    assert code == 2 and "expected SLOT=AMOUNT" in err
