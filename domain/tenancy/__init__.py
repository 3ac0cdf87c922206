"""The tenancy aggregates: Domain, Project, User, Keypair, ResourcePolicy and ResourceGroup.

``states`` holds their immutable states and ``evolve``; ``decide`` the decisions (with
``references``: the other aggregates a decision must know); ``enqueue`` the pure checks of
a session request against tenancy and resource policies.
"""

from domain.tenancy.decide import Known, decide, references
from domain.tenancy.states import (
    DomainState,
    KeypairState,
    PolicyState,
    ProjectState,
    ResourceGroupState,
    TenancyState,
    UserState,
    evolve,
    replay,
)

__all__ = [
    "DomainState",
    "KeypairState",
    "Known",
    "PolicyState",
    "ProjectState",
    "ResourceGroupState",
    "TenancyState",
    "UserState",
    "decide",
    "evolve",
    "references",
    "replay",
]
