"""Data-plane access to a folder: the tokens of uploads, downloads and archives
(``requestUpload`` / ``requestDownload`` / ``requestArchive`` → ``{url, token, expiresAt}``), and
the file operations the gateway runs at the storage service itself (``vfolderFiles``,
``vfolderMkdir``, ``vfolderMove``, ``vfolderDeleteFiles``).

Each needs the folder ready, the caller's permission (read: ro; upload, mkdir, move: rw; delete:
wd, as Backend.AI) and its policy's volume permission (download-file / upload-file). An upload's
size is checked against the quota at issue: ``max_bytes`` = the least of what the quota scope
(the owner's user or project) and the folder's own cap have left (0 limits: none); over it is
QUOTA and nothing is issued. The token carries that ``max_bytes`` (the remaining quota at issue;
``MAX_UPLOAD_BYTES`` when no limit applies) and the folder's quota scope: the storage service refuses
an ``Upload-Length`` over it and bounds concurrent uploads of one scope by its reservation of
in-flight bytes (see services/storage). What is not enforced here: writes from inside a session to a
mounted folder (they show in the usage measured afterwards).
"""

from __future__ import annotations

import weakref

import strawberry

from contracts.limits import Many
from contracts.storage_token import StorageOp
from contracts.vfolder import FolderPathError, VFolderPermission, VFolderStatus, VolumePermission, check_folder_path
from domain.errors import DomainError
from domain.vfolder.access import Actor, check_volume, require
from domain.vfolder.state import VFolderState
from projections.queries import vfolders as q
from services.gateway.context import Info
from services.gateway.errors import BAD_INPUT, CONFLICT, QUOTA, UNAVAILABLE, GatewayError, from_domain
from services.gateway.limits import checked_value
from services.gateway.readmodels import read
from services.gateway.resources import Resources
from services.gateway.vfolders.access import FOLDER_REF, PATH, acting, load_folder
from services.gateway.vfolders.storage_client import MAX_LISTING, Minted, StorageClient
from services.gateway.vfolders.types import FilesDeleted, FolderFile, TransferTicket, VFolderResult

__all__ = ["TransferMutation", "TransferQuery", "remaining_bytes"]

MAX_UPLOAD_BYTES = 2**50
"""The largest single upload a token is issued for (1 PiB)."""
MAX_PATHS = 256
"""The most paths one vfolderDeleteFiles takes."""

_clients: weakref.WeakKeyDictionary[Resources, StorageClient] = weakref.WeakKeyDictionary()


def storage_client(info: Info) -> StorageClient:
    resources = info.context.resources
    client = _clients.get(resources)
    if client is None:
        client = _clients[resources] = StorageClient(resources.settings)
    return client


def _path(path: str, *, root: bool = False, field: str = "path") -> str:
    checked_value(PATH._replace(field=field), path)
    try:
        return check_folder_path(path, allow_root=root)
    except FolderPathError as exc:
        raise GatewayError(BAD_INPUT, str(exc)) from exc


async def _allowed(info: Info, ref: str, needed: VFolderPermission, volume_permission: VolumePermission,
                   what: str) -> tuple[Actor, VFolderState]:
    actor = await acting(info)
    state = await load_folder(info, actor, ref)
    try:
        require(state, actor, needed, what)
        check_volume(actor, state.volume, volume_permission)
    except DomainError as exc:
        raise from_domain(exc) from exc
    if state.status is not VFolderStatus.READY:
        raise GatewayError(CONFLICT, f"folder {state.name!r} is {state.status.value}: {what} needs it ready")
    return actor, state


def _deleted(answer: object) -> bool:
    """Returns True when the storage service's answer to deleting one path says it deleted it (``{"deleted":
    [path]}``; ``[]``: the path named nothing); UNAVAILABLE when it answered something else."""
    if not isinstance(answer, dict) or not isinstance(answer.get("deleted"), list):
        raise GatewayError(UNAVAILABLE, "the storage service answered a deletion with something else than "
                                        '{"deleted": [...]}')
    return bool(answer["deleted"])


def remaining_bytes(scope_limit: int, scope_usage: int, folder_cap: int, folder_usage: int) -> int | None:
    """Returns the bytes an upload may still add (None: no limit applies)."""
    left = [limit - used for limit, used in ((scope_limit, scope_usage), (folder_cap, folder_usage)) if limit > 0]
    return max(0, min(left)) if left else None


async def _room(info: Info, state: VFolderState) -> int | None:
    """Returns the bytes an upload to the folder may still add by its and its scope's quota (None: no limit)."""
    scope = await read(q.scope_usage, info.context.resources.pool, state.quota_scope)
    return remaining_bytes(scope.limit_bytes, scope.usage_bytes, state.quota_limit, state.counted_bytes)


def _ticket(minted: Minted, path: str, max_bytes: int = 0) -> TransferTicket:
    return TransferTicket(url=minted.url, token=minted.token, expires_at=minted.expires_at, path=path,
                          max_bytes=max_bytes)


def _mint(info: Info, actor: Actor, state: VFolderState, path: str, op: StorageOp, *, max_bytes: int = 0,
          dst: str = "") -> Minted:
    return storage_client(info).mint(folder=state.id, volume=state.volume, path=path, op=op, user=actor.user,
                                     quota_scope=state.quota_scope, max_bytes=max_bytes, dst=dst)


@strawberry.type
class TransferQuery:
    @strawberry.field(description="The entries of a directory of a folder you may read (path: relative, \"\" the "
                      "folder's root), as the storage service lists them; at most 10,000.")
    async def vfolder_files(self, info: Info, folder: str, path: str = "") -> list[FolderFile]:
        normal = _path(path, root=True)
        actor, state = await _allowed(info, folder, VFolderPermission.RO, VolumePermission.DOWNLOAD_FILE, "listing")
        minted = _mint(info, actor, state, normal, "list")
        data = await storage_client(info).call("GET", "/files", minted, params={"path": normal})
        entries = data.get("entries", []) if isinstance(data, dict) else []
        return [FolderFile(name=str(e.get("name", "")), type=str(e.get("type", "")), size=float(e.get("size", 0)),
                           mtime=float(e.get("mtime", 0)), escaped=e.get("escaped") is True)
                for e in entries[:MAX_LISTING] if isinstance(e, dict)]

    @strawberry.field(description="The bytes uploads to a folder you may write may still add, by its cap and its "
                      "quota scope's limit (what `requestUpload` checks each size against); null: no limit applies.")
    async def vfolder_upload_room(self, info: Info, folder: str) -> float | None:
        _, state = await _allowed(info, folder, VFolderPermission.RW, VolumePermission.UPLOAD_FILE, "uploading")
        return await _room(info, state)


@strawberry.type
class TransferMutation:
    @strawberry.mutation(description="A token to upload `size` bytes to `path` of a folder you may write (tus at "
                         "`url`); QUOTA when the folder's or its scope's quota has less left; `maxBytes`: the quota "
                         "left at issue, the most the storage service accepts with this token.")
    async def request_upload(self, info: Info, folder: str, path: str, size: float) -> TransferTicket:
        normal = _path(path)
        if size != size or size < 0 or size != int(size) or size > MAX_UPLOAD_BYTES:
            raise GatewayError(BAD_INPUT, f"size is a whole number of bytes, 0 to {MAX_UPLOAD_BYTES}")
        actor, state = await _allowed(info, folder, VFolderPermission.RW, VolumePermission.UPLOAD_FILE, "uploading")
        left = await _room(info, state)
        if left is not None and int(size) > left:
            raise GatewayError(QUOTA, f"an upload of {int(size)} bytes is over the quota: {left} bytes left in "
                                      f"{state.quota_scope} and folder {state.name!r}")
        max_bytes = MAX_UPLOAD_BYTES if left is None else min(left, MAX_UPLOAD_BYTES)
        minted = _mint(info, actor, state, normal, "upload", max_bytes=max_bytes)
        return _ticket(minted, normal, max_bytes)

    @strawberry.mutation(description="A token to download a file of a folder you may read (GET `url`/download, "
                         "Range supported).")
    async def request_download(self, info: Info, folder: str, path: str) -> TransferTicket:
        normal = _path(path)
        actor, state = await _allowed(info, folder, VFolderPermission.RO, VolumePermission.DOWNLOAD_FILE, "downloading")
        return _ticket(_mint(info, actor, state, normal, "download"), normal)

    @strawberry.mutation(description="A token to download a directory of a folder you may read as a tar stream "
                         "(GET `url`/archive); path \"\" is the whole folder.")
    async def request_archive(self, info: Info, folder: str, path: str = "") -> TransferTicket:
        normal = _path(path, root=True)
        actor, state = await _allowed(info, folder, VFolderPermission.RO, VolumePermission.DOWNLOAD_FILE, "downloading")
        return _ticket(_mint(info, actor, state, normal, "archive"), normal)

    @strawberry.mutation(description="Creates a directory (and its parents) in a folder you may write.")
    async def vfolder_mkdir(self, info: Info, folder: str, path: str) -> VFolderResult:
        normal = _path(path)
        actor, state = await _allowed(info, folder, VFolderPermission.RW, VolumePermission.UPLOAD_FILE, "mkdir")
        await storage_client(info).call("POST", "/mkdir", _mint(info, actor, state, normal, "mkdir"),
                                        body={"path": normal})
        return VFolderResult(id=state.id, position=0)

    @strawberry.mutation(description="Moves (renames) a file or directory within a folder you may write.")
    async def vfolder_move(self, info: Info, folder: str, src: str, dst: str) -> VFolderResult:
        source, target = _path(src, field="src"), _path(dst, field="dst")
        actor, state = await _allowed(info, folder, VFolderPermission.RW, VolumePermission.UPLOAD_FILE, "moving files")
        await storage_client(info).call("POST", "/move", _mint(info, actor, state, source, "move", dst=target),
                                        body={"src": source, "dst": target})
        return VFolderResult(id=state.id, position=0)

    @strawberry.mutation(description="Deletes files or directories (recursively) of a folder where you have wd; "
                         "says which paths it deleted and which named nothing.")
    async def vfolder_delete_files(self, info: Info, folder: str, paths: list[str]) -> FilesDeleted:
        checked_value(Many("paths", MAX_PATHS), paths)
        checked_value(FOLDER_REF, folder)
        if not paths:
            raise GatewayError(BAD_INPUT, f"give 1 to {MAX_PATHS} paths")
        normal = [_path(p, field="paths entry") for p in paths]
        actor, state = await _allowed(info, folder, VFolderPermission.WD, VolumePermission.UPLOAD_FILE,
                                      "deleting files")
        client = storage_client(info)
        deleted: list[str] = []
        missing: list[str] = []
        for one in normal:  # a token names one path: one call each
            answer = await client.call("POST", "/delete", _mint(info, actor, state, one, "delete"),
                                       body={"paths": [one]})
            (deleted if _deleted(answer) else missing).append(one)
        return FilesDeleted(id=state.id, position=0, deleted=deleted, missing=missing)
