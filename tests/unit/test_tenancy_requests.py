"""Tenancy in session requests (domain.session's RequestSession) and in the gateway's ownership rule."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from decimal import Decimal

import pytest

from contracts import commands as c
from contracts.envelope import Metadata
from contracts.session import KernelSpec, SessionRequested, SessionSpec
from contracts.status import ClusterMode
from contracts.tenancy import Role
from domain import session as s
from domain.emitting import Context
from domain.errors import InvalidRequestError
from services.gateway.auth.principal import Principal

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def ctx() -> Context:
    counter = itertools.count(1)
    return Context(now=NOW, metadata=Metadata(actor="t", correlation_id="c"), new_id=lambda: uuid.UUID(int=next(counter)))


def request(**fields: object) -> c.RequestSession:
    kernel = KernelSpec(kernel_id="k1", slots={"cpu": Decimal(1), "mem": Decimal(1024)})
    return c.RequestSession(owner="AKIAO", spec=SessionSpec(name="n", image="py", kernels=[kernel], **fields))  # type: ignore[arg-type]


def test_requested_event_carries_the_tenancy_and_scheduling_fields() -> None:
    starts = NOW + dt.timedelta(hours=1)
    [event] = s.decide(None, request(
        user="dave", domain="lab", project="ml", resource_group="gpu", priority=0, cluster_mode=ClusterMode.MULTI_NODE,
        starts_at=starts, batch_timeout=60, dependencies=["s0"], designated_agents=["a1"]), ctx(), "s1")
    assert isinstance(event, SessionRequested)
    spec = event.spec
    assert (spec.user, spec.domain, spec.project, spec.resource_group) == ("dave", "lab", "ml", "gpu")
    assert (spec.priority, spec.cluster_mode, spec.starts_at, spec.batch_timeout) == (
        0, ClusterMode.MULTI_NODE, starts, 60)
    assert (spec.dependencies, spec.designated_agents) == (["s0"], ["a1"])


@pytest.mark.parametrize("fields, fragment", [
    ({"priority": 101}, "priority must be between 0 and 100"),
    ({"priority": -1}, "priority must be between 0 and 100"),
    ({"batch_timeout": -1}, "batch timeout must be >= 0"),
    ({"dependencies": ["a.b"]}, "invalid dependency session id"),
    ({"dependencies": ["s1"]}, "cannot depend on itself"),
    ({"designated_agents": ["a b"]}, "invalid designated agent id"),
    ({"project": "x y"}, "invalid project"),
    ({"starts_at": dt.datetime(2026, 1, 1)}, "time zone"),
])
def test_bad_options_are_refused(fields: dict, fragment: str) -> None:
    with pytest.raises(InvalidRequestError, match=fragment):
        s.decide(None, request(**fields), ctx(), "s1")


@pytest.mark.parametrize("role, domain, sees", [
    (Role.USER, "lab", False),
    (Role.ADMIN, "lab", True),
    (Role.ADMIN, "other", False),
    (Role.SUPERADMIN, "other", True),
])
def test_who_may_see_a_session_of_someone_else(role: Role, domain: str, sees: bool) -> None:
    me = Principal(access_key="AKIAME", user_id="me", role=role, domain="lab")
    assert me.may_see("AKIAME", "anywhere", role)
    assert me.may_see("AKIAOTHER", domain, Role.USER) is sees
    assert me.may_see("AKIAOTHER", domain, Role.ADMIN) is sees
    # a superadmin's session is no admin's to see (tenancy: no admin acts on a superadmin)
    assert me.may_see("AKIAOTHER", domain, Role.SUPERADMIN) is (role is Role.SUPERADMIN)
    assert me.reaches_as_admin("AKIAOTHER", domain) is (role is Role.ADMIN and domain == "lab")
    assert not me.reaches_as_admin("AKIAME", domain)
    assert me.manages(domain) is (role is Role.SUPERADMIN or (role is Role.ADMIN and domain == "lab"))
