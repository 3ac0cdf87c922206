"""Commands of the tenancy context: create and change domains, projects, users, keypairs,
resource policies and resource groups.

They carry raw input as people type it (slot amounts such as ``"4g"``, roles and
scheduler names as text); the domain validates every value and refuses a bad one with
a clear error. The aggregate id travels beside the command (``domain_id(name)``, ...;
a keypair's id is its access key). In the ``*Change`` structs, None keeps the current
value (on creation: the default).
"""

from __future__ import annotations

import msgspec

from contracts.commands import Command
from contracts.tenancy import DEFAULT_POLICY

__all__ = [
    "ChangeKeypairPolicy",
    "CreateDomain",
    "CreateKeypair",
    "CreateProject",
    "CreateResourceGroup",
    "CreateResourcePolicy",
    "CreateUser",
    "DeactivateKeypair",
    "DeactivateUser",
    "GroupOptionsChange",
    "LimitsChange",
    "RawSlots",
    "UpdateDomain",
    "UpdateProject",
    "UpdateResourceGroup",
    "UpdateResourcePolicy",
]

RawSlots = dict[str, str]
"""Slot amounts as typed: ``{"cpu": "8", "mem": "16g"}`` (a missing slot is unlimited)."""


class CreateDomain(Command, frozen=True, kw_only=True):
    name: str
    description: str = ""
    total_resource_slots: RawSlots = {}


class UpdateDomain(Command, frozen=True, kw_only=True):
    total_resource_slots: RawSlots


class CreateProject(Command, frozen=True, kw_only=True):
    name: str
    domain: str
    description: str = ""
    total_resource_slots: RawSlots = {}


class UpdateProject(Command, frozen=True, kw_only=True):
    total_resource_slots: RawSlots


class CreateUser(Command, frozen=True, kw_only=True):
    name: str
    domain: str
    role: str = "user"
    """``superadmin``, ``admin`` or ``user``."""
    projects: list[str] = []
    """Projects the user is a member of; each must belong to ``domain``."""


class DeactivateUser(Command, frozen=True, kw_only=True):
    pass


class CreateKeypair(Command, frozen=True, kw_only=True):
    """The new keypair takes its role and domain from its user."""

    user: str
    resource_policy: str = DEFAULT_POLICY


class DeactivateKeypair(Command, frozen=True, kw_only=True):
    pass


class ChangeKeypairPolicy(Command, frozen=True, kw_only=True):
    resource_policy: str


class LimitsChange(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Fields of ``KeypairLimits`` to set; None keeps the current value (0 / {}: no limit)."""

    total_resource_slots: RawSlots | None = None
    max_concurrent_sessions: int | None = None
    max_pending_session_count: int | None = None
    max_pending_session_resource_slots: RawSlots | None = None
    max_containers_per_session: int | None = None
    idle_timeout: int | None = None
    max_session_lifetime: int | None = None
    rate_limit: int | None = None
    max_concurrent_subscriptions: int | None = None
    max_vfolder_count: int | None = None
    max_quota_scope_size: int | None = None
    allowed_vfolder_hosts: dict[str, list[str]] | None = None
    """Volume -> volume permissions (``contracts.vfolder.VolumePermission`` values); replaces the map."""


class CreateResourcePolicy(Command, frozen=True, kw_only=True):
    name: str
    limits: LimitsChange = msgspec.field(default_factory=LimitsChange)


class UpdateResourcePolicy(Command, frozen=True, kw_only=True):
    limits: LimitsChange


class GroupOptionsChange(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Options of a resource group to set; None keeps the current value."""

    scheduler: str | None = None
    """``fifo``, ``lifo`` or ``drf``."""
    agent_selection: str | None = None
    """``concentrated``, ``dispersed`` or ``roundrobin``."""
    allowed_session_types: list[str] | None = None
    pending_timeout: int | None = None
    public: bool | None = None
    domains: list[str] | None = None
    projects: list[str] | None = None
    keypairs: list[str] | None = None


class CreateResourceGroup(Command, frozen=True, kw_only=True):
    name: str
    description: str = ""
    options: GroupOptionsChange = msgspec.field(default_factory=GroupOptionsChange)


class UpdateResourceGroup(Command, frozen=True, kw_only=True):
    options: GroupOptionsChange
