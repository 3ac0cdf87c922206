"""The pure enqueue checks of a session request against tenancy and the keypair's resource policy."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from contracts.status import SessionType
from contracts.tenancy import KeypairLimits, ResourceGroupOptions, Role, Visibility
from domain.errors import InvalidRequestError
from domain.tenancy import ProjectState, ResourceGroupState, UserState
from domain.tenancy.enqueue import EnqueueFacts, QuotaExceededError, check_enqueue, choose_project, is_visible

GIB = Decimal(1024**3)


def user(*projects: str, role: Role = Role.USER) -> UserState:
    return UserState(id="user_u", version=1, name="u", domain="lab", role=role, projects=projects)


def facts(**changes: object) -> EnqueueFacts:
    base = EnqueueFacts(
        access_key="AKIAU", domain="lab", privileged=False, user=user("ml"), project_name="ml",
        project=ProjectState(id="project_ml", version=1, name="ml", domain="lab", description="", total_resource_slots={}),
        group_name="default",
        group=ResourceGroupState(id="rgroup_default", version=1, name="default", description="",
                                 options=ResourceGroupOptions()),
        session_type=SessionType.INTERACTIVE, cluster_size=1, requested_slots={"cpu": Decimal(1), "mem": GIB},
        limits=KeypairLimits(), pending_count=0, pending_slots={},
    )
    return msgspec.structs.replace(base, **changes)


def group(**visibility: object) -> ResourceGroupState:
    return ResourceGroupState(id="rgroup_g", version=1, name="g", description="",
                              options=ResourceGroupOptions(visibility=Visibility(**visibility)))


@pytest.mark.parametrize("who, requested, expected", [
    (user("default", "ml"), None, "default"),
    (user("ml", "cv"), None, "ml"),
    (user("ml"), "cv", "cv"),
    (None, None, "default"),                         # a keypair from before tenancy
    (user(role=Role.ADMIN), None, "default"),
])
def test_choose_project(who: UserState | None, requested: str | None, expected: str) -> None:
    assert choose_project(who, requested) == expected


def test_a_user_without_projects_must_name_none_and_is_told_why() -> None:
    with pytest.raises(InvalidRequestError, match="belongs to no project"):
        choose_project(user(), None)


@pytest.mark.parametrize("visibility, seen", [
    ({"public": True}, True),
    ({"public": False}, False),
    ({"public": False, "domains": ["lab"]}, True),
    ({"public": False, "projects": ["ml"]}, True),
    ({"public": False, "keypairs": ["AKIAU"]}, True),
    ({"public": False, "domains": ["other"], "projects": ["cv"], "keypairs": ["AKIAX"]}, False),
])
def test_visibility(visibility: dict, seen: bool) -> None:
    assert is_visible(group(**visibility).options, domain="lab", project="ml", access_key="AKIAU") is seen


def test_a_valid_request_passes() -> None:
    check_enqueue(facts())
    check_enqueue(facts(limits=KeypairLimits(max_containers_per_session=2, max_pending_session_count=2,
                                             max_pending_session_resource_slots={"mem": 2 * GIB}),
                        cluster_size=2, pending_count=1, pending_slots={"mem": GIB}))


@pytest.mark.parametrize("changes, error, fragment", [
    ({"project": None}, InvalidRequestError, "project ml does not exist in domain lab"),
    ({"project_name": "cv", "project": ProjectState(id="project_cv", version=1, name="cv", domain="lab",
                                                  description="", total_resource_slots={})},
     InvalidRequestError, "not a member of project cv"),
    ({"group": None}, InvalidRequestError, "resource group default does not exist"),
    ({"group": group(public=False)}, InvalidRequestError, "is not available to you"),
    ({"session_type": SessionType.BATCH, "group": ResourceGroupState(
        id="rgroup_g", version=1, name="g", description="",
        options=ResourceGroupOptions(allowed_session_types=[SessionType.INTERACTIVE]))},
     InvalidRequestError, "does not allow batch sessions"),
    ({"limits": KeypairLimits(max_containers_per_session=1), "cluster_size": 2}, QuotaExceededError, "at most 1"),
    ({"limits": KeypairLimits(max_pending_session_count=3), "pending_count": 3}, QuotaExceededError,
     "already have 3 pending"),
    ({"limits": KeypairLimits(max_pending_session_resource_slots={"mem": GIB}), "pending_slots": {"mem": Decimal(1)}},
     QuotaExceededError, f"mem {GIB + 1} > {GIB}"),
])
def test_refusals(changes: dict, error: type, fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        check_enqueue(facts(**changes))


def test_admins_may_use_any_project_of_their_domain_but_not_of_another() -> None:
    cv = ProjectState(id="project_cv", version=1, name="cv", domain="lab", description="", total_resource_slots={})
    check_enqueue(facts(privileged=True, project_name="cv", project=cv))
    elsewhere = msgspec.structs.replace(cv, domain="other")
    with pytest.raises(InvalidRequestError, match="does not exist in domain lab"):
        check_enqueue(facts(privileged=True, project_name="cv", project=elsewhere))


def test_unlimited_slots_are_not_checked() -> None:
    check_enqueue(facts(limits=KeypairLimits(max_pending_session_resource_slots={"cpu": Decimal(1)}),
                        requested_slots={"cpu": Decimal(1), "mem": 100 * GIB}))
