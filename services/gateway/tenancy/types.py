"""GraphQL types of tenancy (Strawberry), mapped from the typed rows of ``projections.queries``;
mutation inputs and results.

Slot maps are JSON objects of decimal strings; slot inputs are ``[{slot, amount}]`` lists
as in ``createSession`` (``{slot: "mem", amount: "16g"}``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import strawberry
from strawberry.scalars import JSON

from contracts.tenancy import KeypairLimits
from projections.queries.rows import DomainRow, KeypairRow, ProjectRow, ResourceGroupRow, ResourcePolicyRow, UserRow
from services.gateway.slots import SlotInput, slots_json

__all__ = [
    "Domain",
    "DomainInput",
    "Keypair",
    "KeypairSecret",
    "Project",
    "ProjectInput",
    "ResourceGroup",
    "ResourceGroupInput",
    "ResourcePolicy",
    "ResourcePolicyInput",
    "TenancyResult",
    "User",
    "UserInput",
]

_STAMPS = ("created_at", "updated_at", "version")


def _fields(row: msgspec.Struct, *names: str) -> dict[str, Any]:
    return {name: getattr(row, name) for name in (*names, *_STAMPS)}


@strawberry.type
class Domain:
    name: str
    description: str
    total_resource_slots: JSON = strawberry.field(description="Domain quota; a missing slot is unlimited.")
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int

    @staticmethod
    def from_row(row: DomainRow) -> Domain:
        """Returns a domain from a ``domains`` row."""
        return Domain(total_resource_slots=slots_json(row.total_resource_slots), **_fields(row, "name", "description"))


@strawberry.type
class Project:
    name: str
    domain: str
    description: str
    total_resource_slots: JSON
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int

    @staticmethod
    def from_row(row: ProjectRow) -> Project:
        """Returns a project from a ``projects`` row."""
        return Project(total_resource_slots=slots_json(row.total_resource_slots),
                       **_fields(row, "name", "domain", "description"))


@strawberry.type
class User:
    name: str
    domain: str
    role: str = strawberry.field(description="superadmin, admin or user.")
    projects: list[str]
    is_active: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int

    @staticmethod
    def from_row(row: UserRow) -> User:
        """Returns a user from a ``users`` row."""
        return User(projects=list(row.projects), **_fields(row, "name", "domain", "role", "is_active"))


@strawberry.type(description="A keypair without its secret.")
class Keypair:
    access_key: str
    user: str
    domain: str
    role: str
    resource_policy: str
    is_active: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int

    @staticmethod
    def from_row(row: KeypairRow) -> Keypair:
        """Returns a keypair from a ``keypairs_view`` row."""
        return Keypair(user=row.user_name, **_fields(row, "access_key", "domain", "role", "resource_policy", "is_active"))


@strawberry.type(description="A keypair resource policy; counts and durations of 0 and missing slots mean no limit.")
class ResourcePolicy:
    name: str
    total_resource_slots: JSON
    max_concurrent_sessions: int
    max_pending_session_count: int
    max_pending_session_resource_slots: JSON
    max_containers_per_session: int
    idle_timeout: int = strawberry.field(description="Seconds without an execution before termination.")
    max_session_lifetime: int = strawberry.field(description="Seconds from RUNNING before termination.")
    rate_limit: int = strawberry.field(description="API requests per 15 minutes of each keypair (HTTP 429 / "
                                       "RATE_LIMITED beyond; Backend.AI's keypair rate_limit).")
    max_concurrent_subscriptions: int = strawberry.field(description="Subscriptions each keypair may have open at once.")
    max_vfolder_count: int = strawberry.field(description="Folders each user may own (0: no limit).")
    max_quota_scope_size: float = strawberry.field(description="Bytes a user's folders may hold (0: no limit).")
    allowed_vfolder_hosts: JSON = strawberry.field(description="Volume -> the permissions granted there.")
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int

    @staticmethod
    def from_row(row: ResourcePolicyRow) -> ResourcePolicy:
        """Returns a policy from a ``resource_policies`` row."""
        limits = msgspec.convert(row.limits, KeypairLimits, strict=False)  # the fields without a column of their own
        return ResourcePolicy(
            rate_limit=limits.rate_limit, max_concurrent_subscriptions=limits.max_concurrent_subscriptions,
            max_vfolder_count=limits.max_vfolder_count, max_quota_scope_size=limits.max_quota_scope_size,
            allowed_vfolder_hosts={volume: [p.value for p in perms]
                                   for volume, perms in limits.allowed_vfolder_hosts.items()},
            total_resource_slots=slots_json(row.total_resource_slots),
            max_pending_session_resource_slots=slots_json(row.max_pending_session_resource_slots),
            **_fields(row, "name", "max_concurrent_sessions", "max_pending_session_count", "max_containers_per_session",
                      "idle_timeout", "max_session_lifetime"),
        )


@strawberry.type
class ResourceGroup:
    name: str
    description: str
    scheduler: str = strawberry.field(description="fifo, lifo or drf.")
    agent_selection: str = strawberry.field(description="concentrated, dispersed or roundrobin.")
    allowed_session_types: list[str]
    pending_timeout: int = strawberry.field(description="Seconds a session may stay PENDING (0: forever).")
    public: bool
    domains: list[str] = strawberry.field(description="When not public: domains that may use it.")
    projects: list[str]
    keypairs: list[str]
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int

    @staticmethod
    def from_row(row: ResourceGroupRow) -> ResourceGroup:
        """Returns a resource group from a ``resource_groups`` row."""
        return ResourceGroup(
            public=row.is_public, domains=list(row.visible_domains), projects=list(row.visible_projects),
            keypairs=list(row.visible_keypairs), allowed_session_types=list(row.allowed_session_types),
            **_fields(row, "name", "description", "scheduler", "agent_selection", "pending_timeout"),
        )


@strawberry.input
class DomainInput:
    name: str
    description: str = ""
    total_resource_slots: list[SlotInput] | None = strawberry.field(
        default=None, description="On update: None keeps the quota, [] removes it.")


@strawberry.input
class ProjectInput:
    name: str
    domain: str | None = strawberry.field(default=None, description="Defaults to the caller's domain (create only).")
    description: str = ""
    total_resource_slots: list[SlotInput] | None = None


@strawberry.input
class UserInput:
    name: str
    domain: str | None = strawberry.field(default=None, description="Defaults to the caller's domain.")
    role: str = strawberry.field(default="user", description="superadmin, admin or user (admins create admin/user).")
    projects: list[str] | None = strawberry.field(
        default=None, description='Projects the user belongs to; default ["default"] in domain "default", else none.')


@strawberry.input(description="A volume and the permissions a policy grants there (create-vfolder, modify-vfolder, "
                  "delete-vfolder, mount-in-session, upload-file, download-file, invite-others, "
                  "set-user-specific-permission).")
class VolumeHostInput:
    volume: str
    permissions: list[str]


@strawberry.input(description="Limits to set; a field left out keeps its value (on create: no limit).")
class ResourcePolicyInput:
    name: str
    total_resource_slots: list[SlotInput] | None = None
    max_concurrent_sessions: int | None = None
    max_pending_session_count: int | None = None
    max_pending_session_resource_slots: list[SlotInput] | None = None
    max_containers_per_session: int | None = None
    idle_timeout: int | None = None
    max_session_lifetime: int | None = None
    rate_limit: int | None = strawberry.field(default=None, description="Requests per 15 minutes (on create: 30000).")
    max_concurrent_subscriptions: int | None = strawberry.field(
        default=None, description="Subscriptions open at once (on create: 64).")
    max_vfolder_count: int | None = strawberry.field(
        default=None, description="Folders each user may own (on create: 100; 0: no limit).")
    max_quota_scope_size: float | None = strawberry.field(
        default=None, description="Bytes all folders of a user may hold (on create: 0, no limit).")
    allowed_vfolder_hosts: list[VolumeHostInput] | None = strawberry.field(
        default=None, description="Volume -> what may be done there (replaces the map; on create: volume local with "
                                  "every permission).")


@strawberry.input(description="Options to set; a field left out keeps its value (on create: the default).")
class ResourceGroupInput:
    name: str
    description: str = ""
    scheduler: str | None = strawberry.field(default=None, description="fifo (default), lifo or drf.")
    agent_selection: str | None = strawberry.field(
        default=None, description="concentrated, dispersed (default) or roundrobin.")
    allowed_session_types: list[str] | None = None
    pending_timeout: int | None = None
    public: bool | None = strawberry.field(default=None, description="Public (default) or only for the lists below.")
    domains: list[str] | None = None
    projects: list[str] | None = None
    keypairs: list[str] | None = None


@strawberry.type
class TenancyResult:
    id: str = strawberry.field(description="The name (an access key for keypairs).")
    position: int = strawberry.field(description="Event-store position of the last event; pass it as afterPosition.")


@strawberry.type(description="A new keypair: the secret key is shown this once and never again.")
class KeypairSecret:
    access_key: str
    secret_key: str
    position: int
