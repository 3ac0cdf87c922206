"""The tenancy read models, fed hand-built events through the runner on a real PostgreSQL."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from contracts import tenancy as tn
from contracts.envelope import Event
from contracts.status import SessionType
from contracts.tenancy import KeypairLimits, ResourceGroupOptions, Role, SchedulerPolicy, Visibility
from projections.rebuild import dump_read_models, reset_read_models
from tests.support.projections import Builder, Feeder, at, build, feed, read_models  # noqa: F401

GIB = 1024**3


def row(feed: Feeder, table: str, key: str, value: str) -> dict[str, Any]:
    cur = feed.conn.execute(f"SELECT * FROM {table} WHERE {key} = %s", (value,))
    names = [c.name for c in cur.description]
    found = cur.fetchone()
    assert found is not None, f"no {table} row {value}"
    return dict(zip(names, found))


def history(build: Builder) -> list[Event]:
    limits = KeypairLimits(total_resource_slots={"cpu": Decimal(8)}, max_pending_session_count=2,
                           max_pending_session_resource_slots={"mem": Decimal(4 * GIB)})
    return [
        build(tn.DomainCreated, "domain_lab", name="lab", description="the lab", total_resource_slots={"cpu": Decimal(64)}),
        build(tn.ProjectCreated, "project_ml", name="ml", domain="lab"),
        build(tn.UserCreated, "user_alice", name="alice", domain="lab", role=Role.ADMIN, projects=["ml"]),
        build(tn.ResourcePolicyCreated, "policy_small", name="small", limits=limits),
        build(tn.KeypairCreated, "AKIAALICE", user="alice", role=Role.ADMIN, domain="lab", resource_policy="small"),
        build(tn.ResourceGroupCreated, "rgroup_gpu", name="gpu", options=ResourceGroupOptions(
            scheduler=SchedulerPolicy.DRF, allowed_session_types=[SessionType.BATCH],
            visibility=Visibility(public=False, domains=["lab"], keypairs=["AKIAALICE"]))),
    ]


def test_created_rows(feed: Feeder, build: Builder) -> None:
    result = feed.apply(*history(build))
    assert (result.applied, result.rejected) == (6, 0)
    domain = row(feed, "domains", "name", "lab")
    assert (domain["description"], domain["total_resource_slots"], domain["version"]) == ("the lab", {"cpu": "64"}, 1)
    assert (domain["created_at"], domain["last_position"]) == (at(1), 1)
    project = row(feed, "projects", "name", "ml")
    assert (project["domain"], project["total_resource_slots"]) == ("lab", {})
    user = row(feed, "users", "name", "alice")
    assert (user["domain"], user["role"], user["projects"], user["is_active"]) == ("lab", "admin", ["ml"], True)
    policy = row(feed, "resource_policies", "name", "small")
    assert policy["total_resource_slots"] == {"cpu": "8"} and policy["max_pending_session_count"] == 2
    assert policy["max_pending_session_resource_slots"] == {"mem": str(4 * GIB)}
    assert policy["limits"]["max_pending_session_count"] == 2 and policy["max_concurrent_sessions"] == 0
    keypair = row(feed, "keypairs_view", "access_key", "AKIAALICE")
    assert (keypair["user_name"], keypair["domain"], keypair["role"], keypair["resource_policy"], keypair["is_active"]) == (
        "alice", "lab", "admin", "small", True)
    assert "secret_key" not in keypair
    group = row(feed, "resource_groups", "name", "gpu")
    assert (group["scheduler"], group["agent_selection"], group["allowed_session_types"]) == ("drf", "dispersed", ["batch"])
    assert (group["is_public"], group["visible_domains"], group["visible_keypairs"]) == (False, ["lab"], ["AKIAALICE"])
    assert group["options"]["visibility"]["public"] is False


def test_updates_and_deactivations(feed: Feeder, build: Builder) -> None:
    feed.apply(*history(build))
    feed.apply(
        build(tn.DomainUpdated, "domain_lab", total_resource_slots={"cpu": Decimal(32)}),
        build(tn.ProjectUpdated, "project_ml", total_resource_slots={"mem": Decimal(GIB)}),
        build(tn.UserDeactivated, "user_alice"),
        build(tn.KeypairPolicyChanged, "AKIAALICE", resource_policy="default"),
        build(tn.KeypairDeactivated, "AKIAALICE"),
        build(tn.ResourcePolicyUpdated, "policy_small", limits=KeypairLimits(max_containers_per_session=4)),
        build(tn.ResourceGroupUpdated, "rgroup_gpu", options=ResourceGroupOptions()),
    )
    assert feed.rejected == []
    domain = row(feed, "domains", "name", "lab")
    assert (domain["total_resource_slots"], domain["version"], domain["updated_at"]) == ({"cpu": "32"}, 2, at(7))
    assert row(feed, "projects", "name", "ml")["total_resource_slots"] == {"mem": str(GIB)}
    assert row(feed, "users", "name", "alice")["is_active"] is False
    keypair = row(feed, "keypairs_view", "access_key", "AKIAALICE")
    assert (keypair["resource_policy"], keypair["is_active"], keypair["version"]) == ("default", False, 3)
    policy = row(feed, "resource_policies", "name", "small")
    assert (policy["max_containers_per_session"], policy["max_pending_session_count"], policy["total_resource_slots"]) == (
        4, 0, {})
    group = row(feed, "resource_groups", "name", "gpu")
    assert (group["is_public"], group["scheduler"], group["visible_domains"]) == (True, "fifo", [])


def test_update_of_an_unknown_row_is_dead_lettered(feed: Feeder, build: Builder) -> None:
    result = feed.apply(build(tn.UserDeactivated, "user_ghost"))
    assert result.rejected == 1 and "no row in users" in feed.rejected[0].error


def test_rebuild_gives_identical_rows(feed: Feeder, build: Builder) -> None:
    events = history(build) + [build(tn.KeypairDeactivated, "AKIAALICE"), build(tn.UserDeactivated, "user_alice")]
    deliveries = [feed.delivery(e) for e in events]
    feed.apply(*deliveries)
    before = dump_read_models(feed.conn)
    reset_read_models(feed.conn)
    feed.apply(*deliveries)
    after = dump_read_models(feed.conn)
    assert after == before and len(after["users"]) == 1 and len(after["resource_groups"]) == 1
