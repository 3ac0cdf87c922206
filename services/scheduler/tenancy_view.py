"""What the scheduler knows of tenancy: each keypair's policy limits, project and domain
quotas, and resource groups' options — kept from the tenancy events."""

from __future__ import annotations

from decimal import Decimal
from functools import singledispatchmethod

from contracts import tenancy as ev
from contracts.envelope import Event
from contracts.tenancy import KeypairLimits, ResourceGroupOptions
from services.application.policies import KeypairPolicies
from services.scheduler.snapshot_state import PoliciesState, TenancyState

__all__ = ["TENANCY_EVENTS", "TenancyView"]

TENANCY_EVENTS: tuple[type[Event], ...] = (
    ev.KeypairCreated, ev.KeypairDeactivated, ev.KeypairPolicyChanged,
    ev.ResourcePolicyCreated, ev.ResourcePolicyUpdated,
    ev.ProjectCreated, ev.ProjectUpdated,
    ev.DomainCreated, ev.DomainUpdated,
    ev.ResourceGroupCreated, ev.ResourceGroupUpdated,
)
"""Every event of the keypair, policy, project, domain and resource-group contexts (what the
view is kept from)."""


class TenancyView:
    """Limits and options by name; a name never seen has no limit (or default options)."""

    def __init__(self) -> None:
        self._policies = KeypairPolicies()
        self._projects: dict[str, dict[str, Decimal]] = {}
        self._domains: dict[str, dict[str, Decimal]] = {}
        self._groups: dict[str, ResourceGroupOptions] = {}
        self._names: dict[str, str] = {}
        """aggregate id -> name, for the update events that carry no name."""

    def export(self) -> TenancyState:
        """Returns what it knows as values (copies)."""
        policy_of, limits = self._policies.export()
        return TenancyState(policies=PoliciesState(policy_of=policy_of, limits=limits),
                            projects={k: dict(v) for k, v in self._projects.items()},
                            domains={k: dict(v) for k, v in self._domains.items()},
                            groups=dict(self._groups), names=dict(self._names))

    @classmethod
    def restore(cls, state: TenancyState) -> TenancyView:
        """Returns the view ``export`` returned ``state`` of."""
        view = cls()
        view._policies = KeypairPolicies.restore(state.policies.policy_of, state.policies.limits)
        view._projects = {k: dict(v) for k, v in state.projects.items()}
        view._domains = {k: dict(v) for k, v in state.domains.items()}
        view._groups, view._names = dict(state.groups), dict(state.names)
        return view

    def keypair_limits(self) -> dict[str, KeypairLimits]:
        """Returns the limits of every keypair whose policy is known."""
        return self._policies.all_limits()

    def project_limits(self) -> dict[str, dict[str, Decimal]]:
        return dict(self._projects)

    def domain_limits(self) -> dict[str, dict[str, Decimal]]:
        return dict(self._domains)

    def groups(self) -> dict[str, ResourceGroupOptions]:
        return dict(self._groups)

    @singledispatchmethod
    def apply(self, event: Event) -> bool:
        """Applies one tenancy event; returns True when it may allow a placement."""
        return self._policies.apply(event)

    @apply.register
    def _(self, event: ev.ProjectCreated) -> bool:
        self._names[event.originator_id] = event.name
        self._projects[event.name] = dict(event.total_resource_slots)
        return False

    @apply.register
    def _(self, event: ev.ProjectUpdated) -> bool:
        self._projects[self._names[event.originator_id]] = dict(event.total_resource_slots)
        return True

    @apply.register
    def _(self, event: ev.DomainCreated) -> bool:
        self._names[event.originator_id] = event.name
        self._domains[event.name] = dict(event.total_resource_slots)
        return False

    @apply.register
    def _(self, event: ev.DomainUpdated) -> bool:
        self._domains[self._names[event.originator_id]] = dict(event.total_resource_slots)
        return True

    @apply.register
    def _(self, event: ev.ResourceGroupCreated) -> bool:
        self._names[event.originator_id] = event.name
        self._groups[event.name] = event.options
        return True

    @apply.register
    def _(self, event: ev.ResourceGroupUpdated) -> bool:
        self._groups[self._names[event.originator_id]] = event.options
        return True
