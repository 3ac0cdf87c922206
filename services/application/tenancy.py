"""Use cases of the tenancy context: domains, projects, users, keypairs, resource policies
and resource groups (load, decide, save), and ``ensure_defaults``.

The secrets of keypairs never pass through here: the gateway's keypairs table holds them
and records ``keypair.created`` through ``handle``.
"""

from __future__ import annotations

from collections.abc import Iterable

from contracts import tenancy_commands as tc
from contracts.commands import Command
from contracts.envelope import Event
from contracts.tenancy import (
    DEFAULT_DOMAIN,
    DEFAULT_POLICY,
    DEFAULT_PROJECT,
    DEFAULT_RESOURCE_GROUP,
    KeypairLimits,
    Role,
    domain_id,
    policy_id,
    project_id,
    rgroup_id,
    user_id,
)
from domain import tenancy
from domain.emitting import Context
from domain.errors import AlreadyExistsError
from domain.tenancy import KeypairState, PolicyState, TenancyState
from services.application.context import make_context
from services.application.long_lived import LONG_LIVED
from services.common.store import BerthApplication, ConcurrencyError, retry_on_conflict

__all__ = ["ADMIN_USER", "Tenancy", "default_commands", "ensure_defaults"]

ADMIN_USER = "admin"
"""The superadmin user that ``ensure_defaults`` creates (owner of the first keypair)."""


def default_commands() -> list[tuple[str, Command]]:
    """Returns, in creation order, the aggregates every installation has: domain, project,
    resource policy and resource group ``default`` (no limits, fifo, dispersed) and the
    superadmin user ``admin``."""
    return [
        (domain_id(DEFAULT_DOMAIN), tc.CreateDomain(name=DEFAULT_DOMAIN, description="The default domain")),
        (project_id(DEFAULT_PROJECT), tc.CreateProject(
            name=DEFAULT_PROJECT, domain=DEFAULT_DOMAIN, description="The default project")),
        (policy_id(DEFAULT_POLICY), tc.CreateResourcePolicy(name=DEFAULT_POLICY)),
        (rgroup_id(DEFAULT_RESOURCE_GROUP), tc.CreateResourceGroup(
            name=DEFAULT_RESOURCE_GROUP, description="The default resource group",
            options=tc.GroupOptionsChange(scheduler="fifo", agent_selection="dispersed"))),
        (user_id(ADMIN_USER), tc.CreateUser(
            name=ADMIN_USER, domain=DEFAULT_DOMAIN, role="superadmin", projects=[DEFAULT_PROJECT])),
    ]


class Tenancy(BerthApplication):
    """Loads tenancy aggregates (and the ones a decision refers to), decides, and saves."""

    long_lived = LONG_LIVED

    def get(self, aggregate_id: str) -> TenancyState | None:
        """Returns the current state of a tenancy aggregate, None when unknown."""
        return self.current(aggregate_id, tenancy.evolve)

    def cached(self, aggregate_id: str) -> TenancyState | None:
        """The cached state of a tenancy aggregate, possibly behind the store (a guess; reads nothing)."""
        return self.peek(aggregate_id, tenancy.evolve)

    def get_many(self, aggregate_ids: Iterable[str]) -> dict[str, TenancyState | None]:
        """``get`` of several aggregates, caught up with one read (an enqueue check's facts, say)."""
        return self.current_many(aggregate_ids, tenancy.evolve)

    def keypair_role(self, access_key: str) -> Role | None:
        """Returns the role of keypair ``access_key`` (its user's), None when unknown. A role never
        changes, so a cached state answers without reading the store."""
        keypair = self.cached(access_key)
        if not isinstance(keypair, KeypairState):
            keypair = self.get(access_key)
        return keypair.role if isinstance(keypair, KeypairState) else None

    def keypair_limits(self, access_key: str) -> KeypairLimits:
        """Returns the limits of the resource policy of keypair ``access_key`` (the default policy's
        when the keypair names none; no limits when the policy is unknown)."""
        keypair = self.get(access_key)
        name = keypair.resource_policy if isinstance(keypair, KeypairState) else DEFAULT_POLICY
        policy = self.get(policy_id(name))
        return policy.limits if isinstance(policy, PolicyState) else KeypairLimits()

    def decide(self, aggregate_id: str, command: Command, ctx: Context) -> list[Event]:
        """Returns the events ``command`` causes (nothing is saved); raises a ``DomainError``."""
        known = {ref: self.get(ref) for ref in tenancy.references(command)}
        return tenancy.decide(self.get(aggregate_id), command, ctx, aggregate_id, known)

    def handle(self, aggregate_id: str, command: Command, ctx: Context) -> int:
        """Decides ``command`` and saves its events; returns the position of the last one (the
        current position when nothing changed). A creation that loses a race to a twin raises
        ``AlreadyExistsError``; an update is retried on the fresh state."""

        def attempt() -> int:
            return self.record(self.decide(aggregate_id, command, ctx)) or self.position()

        try:
            return retry_on_conflict(attempt)
        except ConcurrencyError as exc:
            raise AlreadyExistsError(f"{aggregate_id} changed concurrently: {exc}") from exc

    def ensure(self, aggregate_id: str, command: Command, ctx: Context) -> bool:
        """Creates an aggregate unless it exists (two callers at once create it once); returns
        True when this call created it."""
        if self.get(aggregate_id) is not None:
            return False
        try:
            self.handle(aggregate_id, command, ctx)
        except AlreadyExistsError:
            return False
        return True

    def deactivate_user(self, name: str, access_keys: Iterable[str], ctx: Context) -> int:
        """Deactivates a user and its active keypairs in one save; returns the position."""

        def attempt() -> int:
            events = self.decide(user_id(name), tc.DeactivateUser(), ctx)
            for access_key in sorted(set(access_keys)):
                state = self.get(access_key)
                if isinstance(state, tenancy.KeypairState) and state.is_active:
                    events += self.decide(access_key, tc.DeactivateKeypair(), ctx)
            position = self.record(events)
            assert position is not None
            return position

        return retry_on_conflict(attempt)


def ensure_defaults(dsn: str | None, *, app: Tenancy | None = None, actor: str = "system") -> list[str]:
    """Creates, idempotently, what ``default_commands`` lists; returns the ids it created."""
    own = app is None
    tenancy_app = Tenancy(dsn) if app is None else app
    try:
        ctx = make_context(actor)
        return [agg_id for agg_id, command in default_commands() if tenancy_app.ensure(agg_id, command, ctx)]
    finally:
        if own:
            tenancy_app.close()
