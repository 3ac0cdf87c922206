"""Events of the tenancy context: domains, projects, users, keypairs, resource policies
and resource groups. Secrets never appear in events.

Aggregate ids carry the kind as a prefix (``domain_default``, ``project_ml``,
``user_alice``, ``policy_default``, ``rgroup_default``) so that names of different
kinds never collide in the one event log; a keypair's id is its access key.
Limits follow Backend.AI: a slot absent from ``total_resource_slots`` is unlimited,
and a count or duration of 0 means "no limit".
"""

from __future__ import annotations

from decimal import Decimal
from enum import Enum

import msgspec

from contracts.envelope import Event
from contracts.status import SessionType
from contracts.vfolder import DEFAULT_VOLUME, VolumePermission

__all__ = [
    "DEFAULT_DOMAIN",
    "DEFAULT_MAX_SUBSCRIPTIONS",
    "DEFAULT_POLICY",
    "DEFAULT_PROJECT",
    "DEFAULT_MAX_VFOLDER_COUNT",
    "DEFAULT_RATE_LIMIT",
    "DEFAULT_VFOLDER_HOSTS",
    "DEFAULT_RESOURCE_GROUP",
    "DomainCreated",
    "DomainUpdated",
    "KeypairCreated",
    "KeypairDeactivated",
    "KeypairLimits",
    "KeypairPolicyChanged",
    "ProjectCreated",
    "ProjectStorageLimitSet",
    "ProjectUpdated",
    "ResourceGroupCreated",
    "ResourceGroupOptions",
    "ResourceGroupUpdated",
    "ResourcePolicyCreated",
    "ResourcePolicyUpdated",
    "Role",
    "SchedulerPolicy",
    "SelectionStrategy",
    "UserCreated",
    "UserDeactivated",
    "Visibility",
    "domain_id",
    "policy_id",
    "project_id",
    "rgroup_id",
    "user_id",
]

DEFAULT_DOMAIN = "default"
DEFAULT_PROJECT = "default"
DEFAULT_POLICY = "default"
DEFAULT_RESOURCE_GROUP = "default"


class Role(str, Enum):
    SUPERADMIN = "superadmin"
    ADMIN = "admin"
    USER = "user"


class SchedulerPolicy(str, Enum):
    """Order of the pending sessions within one priority band of a resource group."""

    FIFO = "fifo"
    LIFO = "lifo"
    DRF = "drf"


class SelectionStrategy(str, Enum):
    """How a resource group picks an agent among those that fit."""

    CONCENTRATED = "concentrated"
    DISPERSED = "dispersed"
    ROUNDROBIN = "roundrobin"


def domain_id(name: str) -> str:
    return f"domain_{name}"


def project_id(name: str) -> str:
    return f"project_{name}"


def user_id(name: str) -> str:
    return f"user_{name}"


def policy_id(name: str) -> str:
    return f"policy_{name}"


def rgroup_id(name: str) -> str:
    return f"rgroup_{name}"


DEFAULT_RATE_LIMIT = 30000
"""A policy's ``rate_limit`` unless set (also of the policies recorded before it existed): 30,000
requests per 15 minutes, 33 a second on average, bursts up to the whole window."""
DEFAULT_MAX_SUBSCRIPTIONS = 64
"""A policy's ``max_concurrent_subscriptions`` unless set (also of the policies recorded before it existed)."""

DEFAULT_MAX_VFOLDER_COUNT = 100
"""A policy's ``max_vfolder_count`` unless set: folders a user may own (0: no limit)."""


def _default_vfolder_hosts() -> dict[str, list[VolumePermission]]:
    return {DEFAULT_VOLUME: list(VolumePermission)}


DEFAULT_VFOLDER_HOSTS = _default_vfolder_hosts()
"""A policy's ``allowed_vfolder_hosts`` unless set: the default volume with every permission."""


class KeypairLimits(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A keypair resource policy (Backend.AI's ``keypair_resource_policies``)."""

    total_resource_slots: dict[str, Decimal] = {}
    max_concurrent_sessions: int = 0
    max_pending_session_count: int = 0
    max_pending_session_resource_slots: dict[str, Decimal] = {}
    max_containers_per_session: int = 0
    idle_timeout: int = 0
    """Seconds without an execution before a session is terminated."""
    max_session_lifetime: int = 0
    """Seconds from RUNNING before a session is terminated."""
    rate_limit: int = DEFAULT_RATE_LIMIT
    """API requests a keypair may make per 15 minutes (Backend.AI's keypair ``rate_limit``; 0: no limit)."""
    max_concurrent_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS
    """GraphQL subscriptions a keypair may have open at once (0: no limit)."""
    max_vfolder_count: int = DEFAULT_MAX_VFOLDER_COUNT
    """Folders a user may own, trashed ones included (0: no limit)."""
    max_quota_scope_size: int = 0
    """Bytes all folders of a user may hold together (the user's quota scope; 0: no limit)."""
    allowed_vfolder_hosts: dict[str, list[VolumePermission]] = msgspec.field(default_factory=_default_vfolder_hosts)
    """Volume -> what the keypair may do there (Backend.AI's ``allowed_vfolder_hosts``); a volume
    absent from the map: nothing."""


class Visibility(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Who may use a resource group: everyone when public, else the union of the lists."""

    public: bool = True
    domains: list[str] = []
    projects: list[str] = []
    keypairs: list[str] = []


class ResourceGroupOptions(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    scheduler: SchedulerPolicy = SchedulerPolicy.FIFO
    agent_selection: SelectionStrategy = SelectionStrategy.DISPERSED
    allowed_session_types: list[SessionType] = msgspec.field(
        default_factory=lambda: [SessionType.INTERACTIVE, SessionType.BATCH]
    )
    pending_timeout: int = 0
    """Seconds a session may stay PENDING before it is cancelled (0: forever)."""
    visibility: Visibility = msgspec.field(default_factory=Visibility)


class DomainCreated(Event, frozen=True, kw_only=True, tag="domain.created"):
    name: str
    description: str = ""
    total_resource_slots: dict[str, Decimal] = {}


class DomainUpdated(Event, frozen=True, kw_only=True, tag="domain.updated"):
    total_resource_slots: dict[str, Decimal]


class ProjectCreated(Event, frozen=True, kw_only=True, tag="project.created"):
    name: str
    domain: str
    description: str = ""
    total_resource_slots: dict[str, Decimal] = {}


class ProjectUpdated(Event, frozen=True, kw_only=True, tag="project.updated"):
    total_resource_slots: dict[str, Decimal]


class ProjectStorageLimitSet(Event, frozen=True, kw_only=True, tag="project.storage_limit_set"):
    """Bytes all folders of the project may hold together (its quota scope; 0: no limit)."""

    max_quota_scope_size: int


class UserCreated(Event, frozen=True, kw_only=True, tag="user.created"):
    name: str
    domain: str
    role: Role
    projects: list[str] = []


class UserDeactivated(Event, frozen=True, kw_only=True, tag="user.deactivated"):
    pass


class KeypairCreated(Event, frozen=True, kw_only=True, tag="keypair.created"):
    """The aggregate id is the access key; the secret key is kept outside the event store."""

    user: str
    role: Role
    domain: str = DEFAULT_DOMAIN
    resource_policy: str = DEFAULT_POLICY


class KeypairDeactivated(Event, frozen=True, kw_only=True, tag="keypair.deactivated"):
    pass


class KeypairPolicyChanged(Event, frozen=True, kw_only=True, tag="keypair.policy_changed"):
    resource_policy: str


class ResourcePolicyCreated(Event, frozen=True, kw_only=True, tag="policy.created"):
    name: str
    limits: KeypairLimits


class ResourcePolicyUpdated(Event, frozen=True, kw_only=True, tag="policy.updated"):
    limits: KeypairLimits


class ResourceGroupCreated(Event, frozen=True, kw_only=True, tag="rgroup.created"):
    name: str
    description: str = ""
    options: ResourceGroupOptions = msgspec.field(default_factory=ResourceGroupOptions)


class ResourceGroupUpdated(Event, frozen=True, kw_only=True, tag="rgroup.updated"):
    options: ResourceGroupOptions
