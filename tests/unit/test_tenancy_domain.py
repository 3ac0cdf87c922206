"""Table tests of the tenancy aggregates: decide and evolve, no I/O."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from decimal import Decimal

import pytest

from contracts import tenancy as ev
from contracts import tenancy_commands as tc
from contracts.commands import Command
from contracts.envelope import Event, Metadata
from contracts.status import SessionType
from contracts.tenancy import Role, SchedulerPolicy, SelectionStrategy, domain_id, policy_id, project_id, rgroup_id, user_id
from domain import tenancy as t
from domain.emitting import Context
from domain.errors import AlreadyExistsError, InvalidRequestError, InvalidTransitionError, NotFoundError

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
GIB = 1024**3
AK = "AKIATEST000000000001"


def ctx() -> Context:
    counter = itertools.count(1)
    return Context(now=NOW, metadata=Metadata(actor="test", correlation_id="c"), new_id=lambda: uuid.UUID(int=next(counter)))


class World:
    """Aggregates by id, changed only through ``decide`` and ``evolve`` (what the use case does)."""

    def __init__(self) -> None:
        self.states: dict[str, t.TenancyState] = {}

    def run(self, aggregate_id: str, command: Command) -> list[Event]:
        known = {ref: self.states.get(ref) for ref in t.references(command)}
        events = t.decide(self.states.get(aggregate_id), command, ctx(), aggregate_id, known)
        for event in events:
            self.states[aggregate_id] = t.evolve(self.states.get(aggregate_id), event)
        return events

    def basics(self) -> World:
        self.run(domain_id("default"), tc.CreateDomain(name="default"))
        self.run(domain_id("lab"), tc.CreateDomain(name="lab", total_resource_slots={"cpu": "64"}))
        self.run(project_id("default"), tc.CreateProject(name="default", domain="default"))
        self.run(project_id("ml"), tc.CreateProject(name="ml", domain="lab"))
        self.run(policy_id("default"), tc.CreateResourcePolicy(name="default"))
        self.run(user_id("alice"), tc.CreateUser(name="alice", domain="lab", projects=["ml"]))
        return self


@pytest.fixture
def world() -> World:
    return World().basics()


def test_domain_created_with_parsed_slots_then_updated(world: World) -> None:
    events = world.run(domain_id("big"), tc.CreateDomain(name="big", total_resource_slots={"cpu": "8", "mem": "16g"}))
    assert [type(e) for e in events] == [ev.DomainCreated]
    assert events[0].total_resource_slots == {"cpu": Decimal(8), "mem": Decimal(16 * GIB)}
    assert events[0].originator_id == "domain_big" and events[0].originator_version == 1
    events = world.run(domain_id("big"), tc.UpdateDomain(total_resource_slots={"cpu": "4"}))
    assert events[0].total_resource_slots == {"cpu": Decimal(4)} and events[0].originator_version == 2
    state = world.states[domain_id("big")]
    assert isinstance(state, t.DomainState) and state.version == 2 and state.total_resource_slots == {"cpu": Decimal(4)}
    assert world.run(domain_id("big"), tc.UpdateDomain(total_resource_slots={"cpu": "4"})) == []  # nothing changes


@pytest.mark.parametrize("aggregate_id, command, error, fragment", [
    (domain_id("default"), tc.CreateDomain(name="default"), AlreadyExistsError, "domain default already exists"),
    (domain_id("a b"), tc.CreateDomain(name="a b"), InvalidRequestError, "invalid domain name 'a b'"),
    (domain_id("x" * 65), tc.CreateDomain(name="x" * 65), InvalidRequestError, "longer than 64"),
    (domain_id("d"), tc.CreateDomain(name="d", total_resource_slots={"cpu": "-1"}), InvalidRequestError, "cpu"),
    (domain_id("d"), tc.CreateDomain(name="d", total_resource_slots={"gpu": "1"}), InvalidRequestError, "unknown resource slot"),
    (domain_id("nope"), tc.UpdateDomain(total_resource_slots={}), NotFoundError, "domain nope not found"),
    (project_id("p"), tc.CreateProject(name="p", domain="nowhere"), InvalidRequestError, "domain nowhere does not exist"),
    (project_id("ml"), tc.CreateProject(name="ml", domain="lab"), AlreadyExistsError, "project ml already exists"),
    (project_id("p.q"), tc.CreateProject(name="p.q", domain="lab"), InvalidRequestError, "invalid project name"),
    (project_id("nope"), tc.UpdateProject(total_resource_slots={}), NotFoundError, "project nope not found"),
    (user_id("bob"), tc.CreateUser(name="bob", domain="nowhere"), InvalidRequestError, "domain nowhere does not exist"),
    (user_id("bob"), tc.CreateUser(name="bob", domain="lab", projects=["ghost"]), InvalidRequestError,
     "project ghost does not exist"),
    (user_id("bob"), tc.CreateUser(name="bob", domain="lab", projects=["default"]), InvalidRequestError,
     "project default belongs to domain default, not to lab"),
    (user_id("bob"), tc.CreateUser(name="bob", domain="lab", role="root"), InvalidRequestError, "unknown role 'root'"),
    (user_id("alice"), tc.CreateUser(name="alice", domain="lab"), AlreadyExistsError, "user alice already exists"),
    (user_id("nope"), tc.DeactivateUser(), NotFoundError, "user nope not found"),
    (policy_id("default"), tc.CreateResourcePolicy(name="default"), AlreadyExistsError, "already exists"),
    (policy_id("p"), tc.CreateResourcePolicy(name="p", limits=tc.LimitsChange(max_concurrent_sessions=-1)),
     InvalidRequestError, "max_concurrent_sessions must be a non-negative integer"),
    (policy_id("p"), tc.CreateResourcePolicy(name="p", limits=tc.LimitsChange(rate_limit=-1)),
     InvalidRequestError, "rate_limit must be a non-negative integer"),
    (policy_id("p"), tc.CreateResourcePolicy(name="p", limits=tc.LimitsChange(max_concurrent_subscriptions=-3)),
     InvalidRequestError, "max_concurrent_subscriptions must be a non-negative integer"),
    (policy_id("p"), tc.CreateResourcePolicy(name="p", limits=tc.LimitsChange(
        max_pending_session_resource_slots={"mem": "lots"})), InvalidRequestError, "max_pending_session_resource_slots"),
    (policy_id("nope"), tc.UpdateResourcePolicy(limits=tc.LimitsChange()), NotFoundError, "resource policy nope not found"),
    (rgroup_id("g"), tc.CreateResourceGroup(name="g", options=tc.GroupOptionsChange(scheduler="random")),
     InvalidRequestError, "unknown scheduler 'random' (known: fifo, lifo, drf)"),
    (rgroup_id("g"), tc.CreateResourceGroup(name="g", options=tc.GroupOptionsChange(agent_selection="packed")),
     InvalidRequestError, "unknown agent selection"),
    (rgroup_id("g"), tc.CreateResourceGroup(name="g", options=tc.GroupOptionsChange(allowed_session_types=["gpu"])),
     InvalidRequestError, "unknown session type"),
    (rgroup_id("g"), tc.CreateResourceGroup(name="g", options=tc.GroupOptionsChange(allowed_session_types=[])),
     InvalidRequestError, "must not be empty"),
    (rgroup_id("g"), tc.CreateResourceGroup(name="g", options=tc.GroupOptionsChange(pending_timeout=-5)),
     InvalidRequestError, "pending_timeout"),
    (rgroup_id("g"), tc.CreateResourceGroup(name="g", options=tc.GroupOptionsChange(public=False, domains=["ghost"])),
     InvalidRequestError, "domain ghost does not exist"),
    (rgroup_id("g"), tc.CreateResourceGroup(name="g", options=tc.GroupOptionsChange(keypairs=["AKIANOPE"])),
     InvalidRequestError, "keypair AKIANOPE does not exist"),
    (rgroup_id("nope"), tc.UpdateResourceGroup(options=tc.GroupOptionsChange()), NotFoundError,
     "resource group nope not found"),
])
def test_refusals_name_what_is_wrong(world: World, aggregate_id: str, command: Command, error: type, fragment: str) -> None:
    before = dict(world.states)
    with pytest.raises(error) as refused:
        world.run(aggregate_id, command)
    assert fragment in str(refused.value)
    assert world.states == before


def test_user_membership_and_deactivation(world: World) -> None:
    world.run(project_id("cv"), tc.CreateProject(name="cv", domain="lab"))
    events = world.run(user_id("bob"), tc.CreateUser(name="bob", domain="lab", role="ADMIN", projects=["cv", "ml", "cv"]))
    assert events[0].role is Role.ADMIN and events[0].projects == ["cv", "ml"]
    world.run(user_id("bob"), tc.DeactivateUser())
    bob = world.states[user_id("bob")]
    assert isinstance(bob, t.UserState) and not bob.is_active and bob.version == 2
    with pytest.raises(InvalidTransitionError, match="already inactive"):
        world.run(user_id("bob"), tc.DeactivateUser())


def test_keypair_takes_role_and_domain_of_its_user(world: World) -> None:
    world.run(policy_id("small"), tc.CreateResourcePolicy(name="small"))
    events = world.run(AK, tc.CreateKeypair(user="alice", resource_policy="small"))
    assert [type(e) for e in events] == [ev.KeypairCreated]
    assert (events[0].user, events[0].role, events[0].domain, events[0].resource_policy) == (
        "alice", Role.USER, "lab", "small")
    assert world.run(AK, tc.ChangeKeypairPolicy(resource_policy="small")) == []
    changed = world.run(AK, tc.ChangeKeypairPolicy(resource_policy="default"))
    assert changed[0].resource_policy == "default"
    world.run(AK, tc.DeactivateKeypair())
    keypair = world.states[AK]
    assert isinstance(keypair, t.KeypairState) and not keypair.is_active and keypair.resource_policy == "default"
    with pytest.raises(InvalidTransitionError):
        world.run(AK, tc.DeactivateKeypair())


@pytest.mark.parametrize("aggregate_id, command, fragment", [
    (AK, tc.CreateKeypair(user="ghost"), "user ghost does not exist"),
    (AK, tc.CreateKeypair(user="alice", resource_policy="ghost"), "resource policy ghost does not exist"),
    ("AKIA BAD", tc.CreateKeypair(user="alice"), "invalid access key"),
])
def test_keypair_refusals(world: World, aggregate_id: str, command: Command, fragment: str) -> None:
    with pytest.raises(InvalidRequestError, match=fragment):
        world.run(aggregate_id, command)
    assert aggregate_id not in world.states


def test_keypair_of_an_inactive_user_is_refused_and_policy_must_exist(world: World) -> None:
    world.run(AK, tc.CreateKeypair(user="alice"))
    with pytest.raises(InvalidRequestError, match="resource policy ghost does not exist"):
        world.run(AK, tc.ChangeKeypairPolicy(resource_policy="ghost"))
    world.run(user_id("alice"), tc.DeactivateUser())
    with pytest.raises(InvalidRequestError, match="user alice is inactive"):
        world.run("AKIATEST000000000002", tc.CreateKeypair(user="alice"))
    with pytest.raises(AlreadyExistsError):
        world.run(AK, tc.CreateKeypair(user="alice"))


def test_policy_update_changes_only_the_given_fields(world: World) -> None:
    world.run(policy_id("p"), tc.CreateResourcePolicy(name="p", limits=tc.LimitsChange(
        total_resource_slots={"cpu": "8", "mem": "16g"}, max_pending_session_count=3)))
    events = world.run(policy_id("p"), tc.UpdateResourcePolicy(limits=tc.LimitsChange(
        max_containers_per_session=2, max_pending_session_resource_slots={"mem": "4g"})))
    limits = events[0].limits
    assert limits.total_resource_slots == {"cpu": Decimal(8), "mem": Decimal(16 * GIB)}
    assert (limits.max_pending_session_count, limits.max_containers_per_session) == (3, 2)
    assert limits.max_pending_session_resource_slots == {"mem": Decimal(4 * GIB)}
    assert world.run(policy_id("p"), tc.UpdateResourcePolicy(limits=tc.LimitsChange(max_containers_per_session=2))) == []


def test_resource_group_options_and_visibility(world: World) -> None:
    world.run(AK, tc.CreateKeypair(user="alice"))
    events = world.run(rgroup_id("gpu"), tc.CreateResourceGroup(name="gpu", description="A100s", options=tc.GroupOptionsChange(
        scheduler="DRF", agent_selection="concentrated", allowed_session_types=["batch"], pending_timeout=600,
        public=False, domains=["lab"], projects=["ml"], keypairs=[AK])))
    options = events[0].options
    assert (options.scheduler, options.agent_selection) == (SchedulerPolicy.DRF, SelectionStrategy.CONCENTRATED)
    assert options.allowed_session_types == [SessionType.BATCH] and options.pending_timeout == 600
    assert (options.visibility.public, options.visibility.domains, options.visibility.keypairs) == (False, ["lab"], [AK])
    updated = world.run(rgroup_id("gpu"), tc.UpdateResourceGroup(options=tc.GroupOptionsChange(public=True, projects=[])))
    assert updated[0].options.visibility.public and updated[0].options.visibility.projects == []
    assert updated[0].options.scheduler is SchedulerPolicy.DRF  # unchanged fields stay
    state = world.states[rgroup_id("gpu")]
    assert isinstance(state, t.ResourceGroupState) and state.description == "A100s" and state.version == 2


def test_defaults_of_a_new_resource_group(world: World) -> None:
    events = world.run(rgroup_id("default"), tc.CreateResourceGroup(name="default"))
    options = events[0].options
    assert (options.scheduler, options.agent_selection, options.visibility.public) == (
        SchedulerPolicy.FIFO, SelectionStrategy.DISPERSED, True)
    assert options.allowed_session_types == [SessionType.INTERACTIVE, SessionType.BATCH]
