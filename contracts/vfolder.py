"""Events of the vfolder context (virtual folders).

A folder is one aggregate ``vfolder_<32 hex>`` (``new_folder_id``); its events travel on
``ev.vfolder.<id>.<type>``. A folder's name is unique per owner among live (not purged)
folders: a claim aggregate ``vfname_<digest>`` (``folder_name_claim_id``) per (owner kind,
owner, name) records which folder holds the name, saved in the same transaction as the
folder's creation or rename (as ``session_names`` does for sessions). A claim is never
released: it is superseded once its holder no longer has the name (renamed, purged).

Every event carries ``by``: the user name who acted ("" for a fact the storage service saw).
Permissions: ``ro`` < ``rw`` < ``wd`` (Backend.AI's). Paths in events are normalised
relative POSIX paths, checked by ``check_folder_path`` (the one validator everyone uses).

The storage service's reports on its volumes are in ``contracts.storage_reports``.
"""

from __future__ import annotations

import hashlib
import unicodedata
import uuid
from enum import Enum

from contracts.envelope import Event

__all__ = [
    "ALL_VFOLDER_EVENTS",
    "DEFAULT_VOLUME",
    "FolderPathError",
    "MAX_FOLDER_NAME_CHARS",
    "MAX_PATH_BYTES",
    "MAX_PATH_COMPONENT_BYTES",
    "OwnerKind",
    "UsageMode",
    "VFolderCreated",
    "VFolderDirectoryCreated",
    "VFolderFileMoved",
    "VFolderFileUploaded",
    "VFolderFilesDeleted",
    "VFolderInvitationAccepted",
    "VFolderInvitationRejected",
    "VFolderInvitationWithdrawn",
    "VFolderInvited",
    "VFolderLeft",
    "VFolderNameClaimed",
    "VFolderPermission",
    "VFolderPermissionChanged",
    "VFolderProvisionFailed",
    "VFolderProvisioned",
    "VFolderPurgeRequested",
    "VFolderPurged",
    "VFolderQuotaSet",
    "VFolderRenamed",
    "VFolderRestored",
    "VFolderShared",
    "VFolderStatus",
    "VFolderTrashed",
    "VFolderUnshared",
    "VFolderUsageMeasured",
    "VolumePermission",
    "WithdrawalReason",
    "check_folder_name",
    "check_folder_path",
    "folder_name_claim_id",
    "is_folder_id",
    "new_folder_id",
    "quota_scope_of",
]

DEFAULT_VOLUME = "local"
"""The volume (Backend.AI's "vfolder host") of a folder created without one."""

MAX_PATH_BYTES = 4096
"""The longest path inside a folder, in UTF-8 bytes (Linux's PATH_MAX)."""
MAX_PATH_COMPONENT_BYTES = 255
"""The longest file or directory name inside a folder, in UTF-8 bytes (Linux's NAME_MAX)."""
MAX_FOLDER_NAME_CHARS = 64
"""The longest folder name (Backend.AI's vfolder name limit)."""


class VFolderPermission(str, Enum):
    """What a user may do with a folder: read-only < read-write < read-write-delete (Backend.AI)."""

    RO = "ro"
    RW = "rw"
    WD = "wd"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def at_least(self, other: VFolderPermission) -> bool:
        return self.rank >= other.rank


_RANK = {VFolderPermission.RO: 1, VFolderPermission.RW: 2, VFolderPermission.WD: 3}


class OwnerKind(str, Enum):
    USER = "user"
    PROJECT = "project"


class UsageMode(str, Enum):
    GENERAL = "general"
    MODEL = "model"
    DATA = "data"


class VFolderStatus(str, Enum):
    PROVISIONING = "provisioning"
    READY = "ready"
    ERROR = "error"
    TRASHED = "trashed"
    PURGING = "purging"
    PURGED = "purged"


class VolumePermission(str, Enum):
    """What a keypair policy (or a domain / project) allows on a volume (Backend.AI's
    ``allowed_vfolder_hosts`` permissions)."""

    CREATE_VFOLDER = "create-vfolder"
    MODIFY_VFOLDER = "modify-vfolder"
    DELETE_VFOLDER = "delete-vfolder"
    MOUNT_IN_SESSION = "mount-in-session"
    UPLOAD_FILE = "upload-file"
    DOWNLOAD_FILE = "download-file"
    INVITE_OTHERS = "invite-others"
    SET_USER_SPECIFIC_PERMISSION = "set-user-specific-permission"


class WithdrawalReason(str, Enum):
    """Why a pending invitation ended unanswered: its inviter (or a manager of the folder) withdrew it,
    or a later share, unshare or permission change concerning its invitee superseded it."""

    WITHDRAWN = "withdrawn"
    SHARED = "shared"
    UNSHARED = "unshared"
    PERMISSION_CHANGED = "permission_changed"


class FolderPathError(ValueError):
    """A path inside a folder, or a folder name, that is not acceptable."""


def new_folder_id() -> str:
    """Returns a fresh folder aggregate id ``vfolder_<32 hex>``."""
    return f"vfolder_{uuid.uuid4().hex}"


def is_folder_id(value: str) -> bool:
    """Returns True when ``value`` has the shape of a folder id."""
    if not isinstance(value, str) or not value.startswith("vfolder_") or len(value) != 40:
        return False
    return all(c in "0123456789abcdef" for c in value[8:])


def quota_scope_of(owner_kind: OwnerKind | str, owner: str) -> str:
    """Returns the quota scope of a folder's owner: ``user:<name>`` or ``project:<name>``."""
    return f"{OwnerKind(owner_kind).value}:{owner}"


def folder_name_claim_id(owner_kind: OwnerKind | str, owner: str, name: str) -> str:
    """Returns the aggregate id of the claim of folder ``name`` by an owner: a digest, so any
    name gives a valid subject token."""
    digest = hashlib.sha256(f"{OwnerKind(owner_kind).value}\x00{owner}\x00{name}".encode()).hexdigest()[:40]
    return f"vfname_{digest}"


def check_folder_path(path: str, *, allow_root: bool = False) -> str:
    """Returns ``path`` normalised: a relative POSIX path in NFC, without empty, ``.`` or ``..``
    components, a leading ``/`` or NUL, each component ≤ 255 UTF-8 bytes and the whole ≤ 4096.
    A trailing ``/`` is dropped. The folder's root (``""``, ``"."`` or ``"/"``) is allowed only with
    ``allow_root`` and normalises to ``""``. Raises ``FolderPathError`` otherwise."""
    if not isinstance(path, str):
        raise FolderPathError("a path must be a string")
    if "\x00" in path:
        raise FolderPathError("a path must not contain NUL")
    if path.startswith("/") and path.strip("/"):
        raise FolderPathError(f"absolute path {path[:80]!r}: give a path relative to the folder")
    normal = unicodedata.normalize("NFC", path)
    parts = [part for part in normal.strip("/").split("/")] if normal.strip("/") else []
    if parts == ["."]:
        parts = []
    for part in parts:
        if part in ("", ".", ".."):
            raise FolderPathError(f"path {path[:80]!r} has an empty, '.' or '..' component")
        if len(part.encode()) > MAX_PATH_COMPONENT_BYTES:
            raise FolderPathError(f"a name in path {path[:80]!r} is over {MAX_PATH_COMPONENT_BYTES} bytes")
        if any(ord(c) < 0x20 or c == "\x7f" for c in part):
            raise FolderPathError(f"path {path[:80]!r} contains a control character")
    result = "/".join(parts)
    if len(result.encode()) > MAX_PATH_BYTES:
        raise FolderPathError(f"path is over {MAX_PATH_BYTES} bytes")
    if not result and not allow_root:
        raise FolderPathError("a path inside the folder is required (not its root)")
    return result


def check_folder_name(name: str) -> str:
    """Returns ``name`` (NFC) when it is a valid folder name: 1-64 characters, no ``/``, ``\\``,
    NUL or control characters, not ``.`` or ``..``, no leading or trailing space. A leading ``.``
    is allowed (Backend.AI mounts such folders of a user automatically). Raises ``FolderPathError``."""
    if not isinstance(name, str):
        raise FolderPathError("a folder name must be a string")
    normal = unicodedata.normalize("NFC", name)
    if not normal or len(normal) > MAX_FOLDER_NAME_CHARS:
        raise FolderPathError(f"a folder name has 1-{MAX_FOLDER_NAME_CHARS} characters")
    if normal in (".", "..") or normal != normal.strip():
        raise FolderPathError(f"invalid folder name {name!r}")
    if any(c in "/\\" or ord(c) < 0x20 or c == "\x7f" for c in normal):
        raise FolderPathError(f"folder name {name!r} contains '/', '\\' or a control character")
    return normal


# --- events -------------------------------------------------------------------------------


class VFolderCreated(Event, frozen=True, kw_only=True, tag="vfolder.created"):
    """A folder requested; status ``provisioning`` until the storage service reports its directory.
    ``clone_of``: the source folder whose content the storage service copies."""

    name: str
    volume: str
    owner_kind: OwnerKind
    owner: str
    domain: str
    quota_scope: str
    usage_mode: UsageMode = UsageMode.GENERAL
    permission: VFolderPermission = VFolderPermission.RW
    """Project members' default permission (the owner of a user folder always has wd)."""
    cloneable: bool = False
    clone_of: str | None = None
    by: str


class VFolderProvisioned(Event, frozen=True, kw_only=True, tag="vfolder.provisioned"):
    """The storage service created the folder's directory: status ``ready``."""


class VFolderProvisionFailed(Event, frozen=True, kw_only=True, tag="vfolder.provision_failed"):
    reason: str


class VFolderRenamed(Event, frozen=True, kw_only=True, tag="vfolder.renamed"):
    name: str
    previous: str
    by: str


class VFolderShared(Event, frozen=True, kw_only=True, tag="vfolder.shared"):
    """``user`` gets ``permission`` on the folder (a project folder's per-user override, or a
    user folder shared directly by its owner)."""

    user: str
    permission: VFolderPermission
    by: str


class VFolderUnshared(Event, frozen=True, kw_only=True, tag="vfolder.unshared"):
    user: str
    by: str


class VFolderInvited(Event, frozen=True, kw_only=True, tag="vfolder.invited"):
    invitation_id: str
    invitee: str
    permission: VFolderPermission
    by: str


class VFolderInvitationAccepted(Event, frozen=True, kw_only=True, tag="vfolder.invitation_accepted"):
    invitation_id: str
    invitee: str


class VFolderInvitationRejected(Event, frozen=True, kw_only=True, tag="vfolder.invitation_rejected"):
    invitation_id: str
    invitee: str


class VFolderInvitationWithdrawn(Event, frozen=True, kw_only=True, tag="vfolder.invitation_withdrawn"):
    """A pending invitation ended unanswered (``reason``): it can no longer be accepted. ``by``: who
    withdrew it, or who shared, unshared or changed the permission of ``invitee``."""

    invitation_id: str
    invitee: str
    reason: WithdrawalReason
    by: str


class VFolderLeft(Event, frozen=True, kw_only=True, tag="vfolder.left"):
    """``user`` no longer has the folder shared with them (they left it)."""

    user: str


class VFolderPermissionChanged(Event, frozen=True, kw_only=True, tag="vfolder.permission_changed"):
    """The permission of ``user`` (who has the folder shared or accepted an invitation) changed."""

    user: str
    permission: VFolderPermission
    by: str


class VFolderTrashed(Event, frozen=True, kw_only=True, tag="vfolder.trashed"):
    by: str


class VFolderRestored(Event, frozen=True, kw_only=True, tag="vfolder.restored"):
    by: str


class VFolderPurgeRequested(Event, frozen=True, kw_only=True, tag="vfolder.purge_requested"):
    """Only from the trash: the storage service deletes the directory, then reports it."""

    by: str


class VFolderPurged(Event, frozen=True, kw_only=True, tag="vfolder.purged"):
    """The directory is gone: status ``purged``, the name is free again, the history stays."""


class VFolderQuotaSet(Event, frozen=True, kw_only=True, tag="vfolder.quota_set"):
    """A per-folder cap in bytes (0: none); the scope's limit comes from policies."""

    limit_bytes: int
    by: str


class VFolderUsageMeasured(Event, frozen=True, kw_only=True, tag="vfolder.usage_measured"):
    """Bytes and files in the folder (recorded only when they changed)."""

    bytes: int
    files: int


class VFolderFileUploaded(Event, frozen=True, kw_only=True, tag="vfolder.file_uploaded"):
    path: str
    size: int
    sha256: str
    by: str


class VFolderFilesDeleted(Event, frozen=True, kw_only=True, tag="vfolder.files_deleted"):
    paths: list[str]
    by: str


class VFolderFileMoved(Event, frozen=True, kw_only=True, tag="vfolder.file_moved"):
    src: str
    dst: str
    by: str


class VFolderDirectoryCreated(Event, frozen=True, kw_only=True, tag="vfolder.directory_created"):
    path: str
    by: str


class VFolderNameClaimed(Event, frozen=True, kw_only=True, tag="vfoldername.claimed"):
    """``folder_id`` holds ``name`` for its owner from now on (until renamed or purged)."""

    owner_kind: OwnerKind
    owner: str
    name: str
    folder_id: str


ALL_VFOLDER_EVENTS: tuple[type[Event], ...] = (
    VFolderCreated, VFolderProvisioned, VFolderProvisionFailed, VFolderRenamed, VFolderShared,
    VFolderUnshared, VFolderInvited, VFolderInvitationAccepted, VFolderInvitationRejected,
    VFolderInvitationWithdrawn, VFolderLeft, VFolderPermissionChanged, VFolderTrashed, VFolderRestored,
    VFolderPurgeRequested, VFolderPurged, VFolderQuotaSet, VFolderUsageMeasured, VFolderFileUploaded,
    VFolderFilesDeleted, VFolderFileMoved, VFolderDirectoryCreated, VFolderNameClaimed,
)
"""Every event of this module (the catalog lists them)."""
