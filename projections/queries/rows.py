"""The typed rows the query functions return: one Struct per read-model table (or join), its
fields named and typed as the columns of ``projections/schema.sql``. JSON columns (slot maps,
status history, payloads) are plain dicts; slot amounts are decimal strings or numbers as stored."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec

__all__ = [
    "AgentRow",
    "DomainRow",
    "EventLogRow",
    "KernelRow",
    "KeypairRow",
    "ProjectRow",
    "QuotaUsageRow",
    "ResourceGroupRow",
    "ResourcePolicyRow",
    "SessionRow",
    "StorageUsageRow",
    "UserRow",
    "VFolderInvitationRow",
    "VFolderRow",
    "VFolderShareRow",
]

JSONObject = dict[str, Any]


class SessionRow(msgspec.Struct, frozen=True, kw_only=True):
    """A row of ``sessions``."""

    session_id: str
    name: str
    owner: str
    image: str
    session_type: str
    status: str
    status_reason: str | None
    status_detail: str | None
    requested_slots: JSONObject
    cluster_size: int
    agent_ids: list[str]
    status_history: JSONObject
    created_at: dt.datetime
    updated_at: dt.datetime
    terminated_at: dt.datetime | None
    version: int
    last_position: int
    user_name: str
    domain: str
    project: str
    resource_group: str
    priority: int
    pending_code: str | None
    pending_reason: str | None
    mounts: list[JSONObject] = []
    """The folders mounted: ``contracts.mounts.MountSpec`` fields as JSON."""


class KernelRow(msgspec.Struct, frozen=True, kw_only=True):
    """A row of ``kernels``."""

    kernel_id: str
    session_id: str
    cluster_role: str
    cluster_idx: int
    agent_id: str | None
    status: str
    container_id: str | None
    exit_code: int | None
    slots: JSONObject
    created_at: dt.datetime
    updated_at: dt.datetime
    status_reason: str | None
    status_detail: str | None


class AgentRow(msgspec.Struct, frozen=True, kw_only=True):
    """A row of ``agents``."""

    agent_id: str
    hostname: str
    backend: str
    resource_group: str
    status: str
    capacity: JSONObject
    occupied: JSONObject
    kernel_count: int
    allocations: JSONObject
    registered_at: dt.datetime
    updated_at: dt.datetime
    version: int


class EventLogRow(msgspec.Struct, frozen=True, kw_only=True):
    """A row of ``event_log``: one event as stored (``payload``: its JSON, decoded)."""

    position: int
    stream_seq: int
    event_id: uuid.UUID
    type: str
    context: str
    aggregate_id: str
    aggregate_version: int
    occurred_at: dt.datetime
    actor: str
    correlation_id: str
    causation_id: str | None
    payload: JSONObject


class QuotaUsageRow(msgspec.Struct, frozen=True, kw_only=True):
    """A row of ``quota_usage`` with its scope's limits: ``limit_slots`` (the keypair's policy,
    the project's or the domain's ``total_resource_slots``; None when unknown) and a keypair's
    ``max_concurrent_sessions``."""

    scope: str
    name: str
    slots: JSONObject
    session_count: int
    limit_slots: JSONObject | None
    max_concurrent_sessions: int | None


class DomainRow(msgspec.Struct, frozen=True, kw_only=True):
    """A row of ``domains``."""

    name: str
    description: str
    total_resource_slots: JSONObject
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int
    last_position: int


class ProjectRow(msgspec.Struct, frozen=True, kw_only=True):
    """A row of ``projects``."""

    name: str
    domain: str
    description: str
    total_resource_slots: JSONObject
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int
    last_position: int


class UserRow(msgspec.Struct, frozen=True, kw_only=True):
    """A row of ``users``."""

    name: str
    domain: str
    role: str
    projects: list[str]
    is_active: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int
    last_position: int


class KeypairRow(msgspec.Struct, frozen=True, kw_only=True):
    """A row of ``keypairs_view`` (never a secret)."""

    access_key: str
    user_name: str
    domain: str
    role: str
    resource_policy: str
    is_active: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int
    last_position: int


class ResourcePolicyRow(msgspec.Struct, frozen=True, kw_only=True):
    """A row of ``resource_policies`` (``limits``: the whole KeypairLimits as JSON)."""

    name: str
    limits: JSONObject
    total_resource_slots: JSONObject
    max_concurrent_sessions: int
    max_pending_session_count: int
    max_pending_session_resource_slots: JSONObject
    max_containers_per_session: int
    idle_timeout: int
    max_session_lifetime: int
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int
    last_position: int


class ResourceGroupRow(msgspec.Struct, frozen=True, kw_only=True):
    """A row of ``resource_groups`` (``options``: the whole ResourceGroupOptions as JSON)."""

    name: str
    description: str
    options: JSONObject
    scheduler: str
    agent_selection: str
    allowed_session_types: list[str]
    pending_timeout: int
    is_public: bool
    visible_domains: list[str]
    visible_projects: list[str]
    visible_keypairs: list[str]
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int
    last_position: int


class VFolderRow(msgspec.Struct, frozen=True, kw_only=True):
    """A row of ``vfolders`` with the reader's own share (``shared_permission``, None when none) and
    the role of the user who owns it (``owner_role``: a personal folder's, from ``users``; None for a
    project's or an unknown user's)."""

    folder_id: str
    name: str
    volume: str
    owner_kind: str
    owner: str
    domain: str
    quota_scope: str
    usage_mode: str
    permission: str
    cloneable: bool
    clone_of: str | None
    status: str
    status_detail: str | None
    quota_limit: int
    usage_bytes: int
    usage_files: int
    created_by: str
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int
    last_position: int
    shared_permission: str | None = None
    owner_role: str | None = None


class VFolderShareRow(msgspec.Struct, frozen=True, kw_only=True):
    """A row of ``vfolder_shares``."""

    folder_id: str
    user_name: str
    permission: str


class VFolderInvitationRow(msgspec.Struct, frozen=True, kw_only=True):
    """A row of ``vfolder_invitations`` with its folder's name."""

    invitation_id: str
    folder_id: str
    folder_name: str
    inviter: str
    invitee: str
    permission: str
    state: str
    created_at: dt.datetime
    updated_at: dt.datetime


class StorageUsageRow(msgspec.Struct, frozen=True, kw_only=True):
    """One quota scope's storage: bytes and files in its live folders, their count, its limit (0: none)."""

    quota_scope: str
    folders: int
    usage_bytes: int
    usage_files: int
    limit_bytes: int
