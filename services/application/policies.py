"""Each keypair's resource policy limits, kept from the tenancy events (the scheduler and the
controller both follow them)."""

from __future__ import annotations

from functools import singledispatchmethod

from contracts import tenancy as ev
from contracts.envelope import Event
from contracts.tenancy import KeypairLimits

__all__ = ["POLICY_EVENTS", "KeypairPolicies"]

POLICY_EVENTS: tuple[type[Event], ...] = (
    ev.KeypairCreated,
    ev.KeypairPolicyChanged,
    ev.ResourcePolicyCreated,
    ev.ResourcePolicyUpdated,
)
"""The events ``KeypairPolicies`` learns from (the followers derive their subjects from them)."""


class KeypairPolicies:
    """keypair (access key) -> policy name -> limits; a keypair or policy never seen has no limits."""

    def __init__(self) -> None:
        self._policy_of: dict[str, str] = {}
        self._limits: dict[str, KeypairLimits] = {}
        """policy aggregate id -> its limits."""

    def export(self) -> tuple[dict[str, str], dict[str, KeypairLimits]]:
        """Returns what it knows (keypair -> policy name, policy id -> limits), as copies."""
        return dict(self._policy_of), dict(self._limits)

    @classmethod
    def restore(cls, policy_of: dict[str, str], limits: dict[str, KeypairLimits]) -> KeypairPolicies:
        """Returns the policies ``export`` returned."""
        policies = cls()
        policies._policy_of, policies._limits = dict(policy_of), dict(limits)
        return policies

    def limits_of(self, access_key: str) -> KeypairLimits | None:
        """Returns the limits of the keypair's policy, None when unknown."""
        policy = self._policy_of.get(access_key)
        return None if policy is None else self._limits.get(ev.policy_id(policy))

    def all_limits(self) -> dict[str, KeypairLimits]:
        """Returns the limits of every keypair whose policy is known."""
        known = ((key, self.limits_of(key)) for key in self._policy_of)
        return {key: limits for key, limits in known if limits is not None}

    @singledispatchmethod
    def apply(self, event: Event) -> bool:
        """Learns from ``event``; returns True when a known keypair's limits may have changed."""
        return False

    @apply.register
    def _(self, event: ev.KeypairCreated) -> bool:
        self._policy_of[event.originator_id] = event.resource_policy
        return False

    @apply.register
    def _(self, event: ev.KeypairPolicyChanged) -> bool:
        self._policy_of[event.originator_id] = event.resource_policy
        return True

    @apply.register
    def _(self, event: ev.ResourcePolicyCreated) -> bool:
        self._limits[event.originator_id] = event.limits
        return False

    @apply.register
    def _(self, event: ev.ResourcePolicyUpdated) -> bool:
        self._limits[event.originator_id] = event.limits
        return True
