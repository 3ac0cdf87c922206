"""KeypairPolicies: keypair -> policy -> limits, from tenancy events."""

from __future__ import annotations

from contracts import tenancy as ev
from contracts.tenancy import KeypairLimits, policy_id
from domain.emitting import Emitter
from services.application.context import make_context
from services.application.policies import KeypairPolicies


def event(cls, aggregate_id: str, version: int = 0, **fields):  # type: ignore[no-untyped-def]
    return Emitter(aggregate_id, version, make_context("test"))(cls, **fields)


def test_a_keypair_gets_its_policys_limits_and_follows_updates_and_changes() -> None:
    policies = KeypairPolicies()
    small, big = KeypairLimits(max_concurrent_sessions=1), KeypairLimits(max_concurrent_sessions=9)
    assert policies.apply(event(ev.ResourcePolicyCreated, policy_id("small"), name="small", limits=small)) is False
    assert policies.apply(event(ev.KeypairCreated, "AK1", user="u", role=ev.Role.USER, resource_policy="small")) is False
    assert policies.limits_of("AK1") == small
    assert policies.apply(event(ev.ResourcePolicyUpdated, policy_id("small"), 1, limits=big)) is True
    assert policies.limits_of("AK1") == big
    policies.apply(event(ev.ResourcePolicyCreated, policy_id("other"), name="other", limits=small))
    assert policies.apply(event(ev.KeypairPolicyChanged, "AK1", 1, resource_policy="other")) is True
    assert policies.all_limits() == {"AK1": small}


def test_unknown_keypairs_and_policies_have_no_limits() -> None:
    policies = KeypairPolicies()
    policies.apply(event(ev.KeypairCreated, "AK1", user="u", role=ev.Role.USER, resource_policy="missing"))
    assert policies.limits_of("AK1") is None and policies.limits_of("AK2") is None
    assert policies.all_limits() == {}
