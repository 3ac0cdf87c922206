"""GraphQL types of folders, mapped from the typed rows of ``projections.queries.vfolders``."""

from __future__ import annotations

import datetime as dt

import strawberry

from projections.queries.rows import StorageUsageRow, VFolderInvitationRow, VFolderRow, VFolderShareRow

__all__ = ["FolderFile", "StorageUsage", "TransferTicket", "VFolder", "VFolderEvent", "VFolderInvitation",
           "VFolderResult", "VFolderShare"]


@strawberry.type(description="Someone a folder is shared with (directly or by an accepted invitation).")
class VFolderShare:
    user: str
    permission: str

    @staticmethod
    def from_row(row: VFolderShareRow) -> VFolderShare:
        return VFolderShare(user=row.user_name, permission=row.permission)


@strawberry.type(description="A virtual folder.")
class VFolder:
    id: str
    name: str
    volume: str
    owner_kind: str = strawberry.field(description="user | project")
    owner: str
    domain: str
    quota_scope: str
    usage_mode: str
    permission: str = strawberry.field(description="A project folder's default permission for its members.")
    my_permission: str | None = strawberry.field(description="The caller's own permission (null: none, only managing).")
    cloneable: bool
    clone_of: str | None
    status: str = strawberry.field(description="provisioning | ready | error | trashed | purging | purged")
    status_detail: str | None
    quota_limit: float = strawberry.field(description="The folder's own cap in bytes (0: none).")
    usage_bytes: float
    usage_files: int
    created_by: str
    created_at: dt.datetime
    updated_at: dt.datetime
    position: int = strawberry.field(description="The event-store position of its last change.")
    shares: list[VFolderShare] = strawberry.field(description="Who it is shared with (for its managers; else []).")

    @staticmethod
    def from_row(row: VFolderRow, my_permission: str | None, shares: list[VFolderShare]) -> VFolder:
        return VFolder(
            id=row.folder_id, name=row.name, volume=row.volume, owner_kind=row.owner_kind, owner=row.owner,
            domain=row.domain, quota_scope=row.quota_scope, usage_mode=row.usage_mode, permission=row.permission,
            my_permission=my_permission, cloneable=row.cloneable, clone_of=row.clone_of, status=row.status,
            status_detail=row.status_detail, quota_limit=row.quota_limit, usage_bytes=row.usage_bytes,
            usage_files=row.usage_files, created_by=row.created_by, created_at=row.created_at,
            updated_at=row.updated_at, position=row.last_position, shares=shares,
        )


@strawberry.type(description="An invitation to a folder.")
class VFolderInvitation:
    id: str
    folder_id: str
    folder_name: str
    inviter: str
    invitee: str
    permission: str
    state: str
    created_at: dt.datetime

    @staticmethod
    def from_row(row: VFolderInvitationRow) -> VFolderInvitation:
        return VFolderInvitation(id=row.invitation_id, folder_id=row.folder_id, folder_name=row.folder_name,
                                 inviter=row.inviter, invitee=row.invitee, permission=row.permission, state=row.state,
                                 created_at=row.created_at)


@strawberry.type(description="The outcome of a folder mutation: the folder (or invitation) id and the event-store "
                 "position of its last event (pass it as afterPosition).")
class VFolderResult:
    id: str
    position: int


@strawberry.type(description="What vfolderDeleteFiles did: the folder, the paths it deleted and those that named "
                 "nothing (each path given is in one of them, in the order given).")
class FilesDeleted:
    id: str
    position: int = strawberry.field(description="0: deleting records no event of its own here (the storage "
                                     "service reports it).")
    deleted: list[str] = strawberry.field(description="The paths deleted (a directory with all in it).")
    missing: list[str] = strawberry.field(description="The paths that named nothing (nothing deleted for them), "
                                          "a directory on their way missing too.")


@strawberry.type(description="A storage token for one operation on one folder path, and where to use it.")
class TransferTicket:
    url: str
    token: str
    expires_at: dt.datetime
    path: str
    max_bytes: float = strawberry.field(description="Uploads: the most bytes this upload may have (0: not an upload).")


@strawberry.type(description="An entry of a folder's directory, as the storage service lists it.")
class FolderFile:
    name: str
    type: str = strawberry.field(description="file | dir")
    size: float
    mtime: float
    escaped: bool = strawberry.field(default=False, description="true: the name is shown as bash's $'...' of its bytes "
                                     "(not UTF-8, a control character, not NFC: made in a session); no path of the API "
                                     "reaches the entry until it is renamed there")


@strawberry.type(description="One quota scope's storage: live folders, their bytes and files, and its limit.")
class StorageUsage:
    quota_scope: str
    folders: int
    usage_bytes: float
    usage_files: int
    limit_bytes: float = strawberry.field(description="0: no limit")

    @staticmethod
    def from_row(row: StorageUsageRow) -> StorageUsage:
        return StorageUsage(quota_scope=row.quota_scope, folders=row.folders, usage_bytes=row.usage_bytes,
                            usage_files=row.usage_files, limit_bytes=row.limit_bytes)


@strawberry.type(description="One event of a folder (subscription vfolderEvents).")
class VFolderEvent:
    position: int
    type: str
    folder_id: str
    version: int
    occurred_at: dt.datetime
    actor: str
    payload: str
