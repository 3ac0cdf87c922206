"""``berth vfolder``: virtual folders' metadata — create, ls, info, rename, rm (to the trash),
restore, purge, clone, share, unshare, invite, withdraw, invitations, accept, reject, leave, set-quota.

A FOLDER argument is a folder id or a name (your own folder first; a name several visible folders
share is refused with their ids). Each change prints the folder as the read models show it once
they reached the change. The data commands (upload, download, ls-files, mkdir, mv, rm-files) join
this group from ``vfolder_transfer_cmd``.
"""

from __future__ import annotations

from typing import Any

import click

from services.cli.cells import UNLIMITED
from services.cli.admin_common import size_bytes
from services.cli.connection import connect_client
from services.cli.output import Output
from services.cli.running import run_async
from services.sdk.client import BerthAPIError

__all__ = ["FOLDER_FIELDS", "STORAGE_COLUMNS", "human_bytes", "size_shown", "storage_rows", "vfolder"]

_FOLDER = ("id name volume ownerKind owner domain quotaScope usageMode permission myPermission cloneable cloneOf "
           "status statusDetail quotaLimit usageBytes usageFiles createdBy createdAt updatedAt position "
           "shares { user permission }")
LIST = ("query($s: String, $all: Boolean!, $p: Int) { vfolders(status: $s, includePurged: $all, afterPosition: $p) "
        f"{{ {_FOLDER} }} }}")
ONE = f"query($f: String!, $p: Int) {{ vfolder(folder: $f, afterPosition: $p) {{ {_FOLDER} }} }}"
CREATE = "mutation($i: CreateVFolderInput!) { createVFolder(input: $i) { id position } }"
CLONE = ("mutation($f: String!, $n: String!, $c: Boolean!) { cloneVFolder(folder: $f, name: $n, cloneable: $c) "
         "{ id position } }")
RENAME = "mutation($f: String!, $n: String!) { renameVFolder(folder: $f, name: $n) { id position } }"
TRASH = "mutation($f: String!) { trashVFolder(folder: $f) { id position } }"
RESTORE = "mutation($f: String!) { restoreVFolder(folder: $f) { id position } }"
PURGE = "mutation($f: String!) { purgeVFolder(folder: $f) { id position } }"
SHARE = ("mutation($f: String!, $u: String!, $m: String!) { shareVFolder(folder: $f, user: $u, permission: $m) "
         "{ id position } }")
UNSHARE = "mutation($f: String!, $u: String!) { unshareVFolder(folder: $f, user: $u) { id position } }"
INVITE = ("mutation($f: String!, $u: String!, $m: String!) { inviteToVFolder(folder: $f, user: $u, permission: $m) "
          "{ id position } }")
INVITATIONS = ("query($all: Boolean!) { vfolderInvitations(all: $all) { id folderId folderName inviter invitee "
               "permission state createdAt } }")
ACCEPT = "mutation($i: String!) { acceptVFolderInvitation(invitationId: $i) { id position } }"
REJECT = "mutation($i: String!) { rejectVFolderInvitation(invitationId: $i) { id position } }"
WITHDRAW = ("mutation($f: String!, $i: String!) { withdrawVFolderInvitation(folder: $f, invitationId: $i) "
            "{ id position } }")
LEAVE = "mutation($f: String!) { leaveVFolder(folder: $f) { id position } }"
SET_QUOTA = "mutation($f: String!, $b: Float!) { setVFolderQuota(folder: $f, limitBytes: $b) { id position } }"
STORAGE = "query { storageUsage { quotaScope folders usageBytes usageFiles limitBytes } }"
SCOPE = "query($s: [String!]) { storageUsage(scopes: $s) { quotaScope folders usageBytes limitBytes } }"

COLUMNS = [("id", "ID"), ("name", "NAME"), ("owner", "OWNER"), ("ownerKind", "KIND"), ("myPermission", "PERM"),
           ("status", "STATUS"), ("usage", "USAGE"), ("volume", "VOLUME")]
FOLDER_FIELDS = [("id", "id"), ("name", "name"), ("status", "status"), ("statusDetail", "status detail"),
                 ("owner", "owner"), ("ownerKind", "owner kind"), ("domain", "domain"), ("volume", "volume"),
                 ("usageMode", "usage mode"), ("permission", "default perm"), ("myPermission", "your perm"),
                 ("cloneable", "cloneable"), ("cloneOf", "clone of"), ("quotaScope", "quota scope"),
                 ("usage", "usage"), ("usageFiles", "files"), ("quota", "quota"), ("sharedWith", "shared with"),
                 ("createdBy", "created by"), ("createdAt", "created"), ("updatedAt", "updated")]
INVITATION_COLUMNS = [("id", "ID"), ("folderName", "FOLDER"), ("inviter", "FROM"), ("permission", "PERM"),
                      ("state", "STATE"), ("createdAt", "SENT")]
STORAGE_COLUMNS = [("quotaScope", "SCOPE"), ("folders", "FOLDERS"), ("used", "USED"), ("files", "FILES"),
                   ("limit", "LIMIT")]
_UNITS = ((1024**5, "PiB"), (1024**4, "TiB"), (1024**3, "GiB"), (1024**2, "MiB"), (1024, "KiB"))
_PERMISSIONS = click.Choice(["ro", "rw", "wd"])
_USER_PERMISSION = "What USER may do: ro read, rw read and write, wd read, write and delete."


def human_bytes(value: float | int | None) -> str:
    """Returns a byte count in binary units (``1.5 MiB``); ``0 B`` for 0."""
    size = int(value or 0)
    for factor, unit in _UNITS:
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size} B"


def size_shown(out: Output, value: float | int | None) -> str:
    """Returns a byte count as ``out`` shows it: in binary units on a terminal (a person reads ``2.9 MiB``), the
    exact count when piped (a script sums and compares them; ``2.9 MiB`` is not the folder's size)."""
    return human_bytes(value) if out.terminal else str(int(value or 0))


def _shown(out: Output, row: dict[str, Any]) -> dict[str, Any]:
    """Adds the display fields of a folder row (usage and quota as ``size_shown``, shares)."""
    quota = row.get("quotaLimit") or 0
    return {**row, "usage": size_shown(out, row.get("usageBytes")),
            "quota": size_shown(out, quota) if quota else UNLIMITED,
            "sharedWith": [f"{s['user']}:{s['permission']}" for s in row.get("shares") or []]}


def storage_rows(out: Output, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Returns storage usage rows with their display fields (``berth usage``, ``berth vfolder info``)."""
    return [{**r, "used": size_shown(out, r["usageBytes"]), "files": r["usageFiles"],
             "limit": size_shown(out, r["limitBytes"]) if r["limitBytes"] else UNLIMITED} for r in rows]


async def _change(out: Output, mutation: str, variables: dict[str, Any], *, show: str | None = None) -> None:
    """Runs a folder mutation, then prints the folder it changed once the read models show it."""
    async with connect_client() as client:
        result = next(iter((await client.execute(mutation, variables)).values()))
        folder = (await client.execute(ONE, {"f": show or result["id"], "p": result["position"]}))["vfolder"]
    out.record(_shown(out, folder), FOLDER_FIELDS)


@click.group()
def vfolder() -> None:
    """Virtual folders: your data, kept across sessions and mounted into them."""


@vfolder.command("create")
@click.argument("name")
@click.option("--project", help="Create the project's folder (admins); its members get --permission.")
@click.option("--volume", default="local", show_default=True, help="The storage volume (host).")
@click.option("--usage-mode", type=click.Choice(["general", "model", "data"]), default="general", show_default=True,
              help="What the folder holds (Backend.AI's usage mode; kept with it, shown by info).")
@click.option("--permission", type=_PERMISSIONS, default="rw", show_default=True,
              help="A project folder's default permission for its members.")
@click.option("--cloneable", is_flag=True, help="Others who may read it may clone it.")
@click.pass_obj
@run_async
async def create(out: Output, name: str, project: str | None, volume: str, usage_mode: str, permission: str,
                 cloneable: bool) -> None:
    """Create folder NAME (yours, or --project's); it is ready once the storage service made it."""
    data = {"name": name, "volume": volume, "usageMode": usage_mode, "permission": permission, "cloneable": cloneable,
            **({"project": project} if project else {})}
    await _change(out, CREATE, {"i": data})


@vfolder.command("ls")
@click.option("--status", type=click.Choice(["provisioning", "ready", "error", "trashed", "purging", "purged"]),
              help="Only folders in this status (trashed: those `berth vfolder rm` moved to the trash).")
@click.option("--all", "include_purged", is_flag=True, help="Purged folders too.")
@click.pass_obj
@run_async
async def ls(out: Output, status: str | None, include_purged: bool) -> None:
    """List the folders you see: yours, shared with you, your projects' (admins: the domain's)."""
    async with connect_client() as client:
        rows = (await client.execute(LIST, {"s": status, "all": include_purged, "p": None}))["vfolders"]
    out.table(rows if out.is_json else [_shown(out, r) for r in rows], COLUMNS)


@vfolder.command("info")
@click.argument("folder")
@click.pass_obj
@run_async
async def info(out: Output, folder: str) -> None:
    """Show FOLDER: owner, permissions, status, usage next to its quota and its quota scope's, who
    it is shared with."""
    async with connect_client() as client:
        row = (await client.execute(ONE, {"f": folder, "p": None}))["vfolder"]
        try:
            (scope,) = (await client.execute(SCOPE, {"s": [row["quotaScope"]]}))["storageUsage"]
        except BerthAPIError:  # a scope not yours (a folder shared with you): its figures are not shown
            scope = None
    shown = _shown(out, row)
    if scope is not None:
        limit = size_shown(out, scope["limitBytes"]) if scope["limitBytes"] else UNLIMITED
        shown["scopeUsage"] = f"{size_shown(out, scope['usageBytes'])} of {limit} ({scope['folders']} folder{'' if scope['folders'] == 1 else 's'})"
    out.record(shown, [*FOLDER_FIELDS[:17], ("scopeUsage", "scope usage"), *FOLDER_FIELDS[17:]])


@vfolder.command("rename")
@click.argument("folder")
@click.argument("new_name")
@click.pass_obj
@run_async
async def rename(out: Output, folder: str, new_name: str) -> None:
    """Rename FOLDER to NEW_NAME (its owner or an admin)."""
    await _change(out, RENAME, {"f": folder, "n": new_name})


def _folder_command(name: str, mutation: str, help_text: str) -> None:
    """Adds ``berth vfolder NAME FOLDER``: one folder mutation with the folder as its only argument."""

    @click.argument("folder")
    @click.pass_obj
    @run_async
    async def command(out: Output, folder: str) -> None:
        await _change(out, mutation, {"f": folder})

    vfolder.command(name, help=help_text)(command)


_folder_command("rm", TRASH, "Move FOLDER to the trash (restore it, or purge it for good).")
_folder_command("restore", RESTORE, "Bring FOLDER back from the trash.")
_folder_command("purge", PURGE, "Delete FOLDER (in the trash) and its data for good; its history stays.")


@vfolder.command("clone")
@click.argument("folder")
@click.argument("new_name")
@click.option("--cloneable", is_flag=True, help="The copy may be cloned in turn.")
@click.pass_obj
@run_async
async def clone(out: Output, folder: str, new_name: str, cloneable: bool) -> None:
    """Copy a cloneable FOLDER you may read into a new folder of yours, NEW_NAME."""
    await _change(out, CLONE, {"f": folder, "n": new_name, "c": cloneable})


@vfolder.command("share")
@click.argument("folder")
@click.argument("user")
@click.option("--permission", type=_PERMISSIONS, default="ro", show_default=True, help=_USER_PERMISSION)
@click.pass_obj
@run_async
async def share(out: Output, folder: str, user: str, permission: str) -> None:
    """Share FOLDER with USER (of its domain); sharing again changes the permission."""
    await _change(out, SHARE, {"f": folder, "u": user, "m": permission})


@vfolder.command("unshare")
@click.argument("folder")
@click.argument("user")
@click.pass_obj
@run_async
async def unshare(out: Output, folder: str, user: str) -> None:
    """Stop sharing FOLDER with USER."""
    await _change(out, UNSHARE, {"f": folder, "u": user})


@vfolder.command("invite")
@click.argument("folder")
@click.argument("user")
@click.option("--permission", type=_PERMISSIONS, default="ro", show_default=True, help=_USER_PERMISSION)
@click.pass_obj
@run_async
async def invite(out: Output, folder: str, user: str, permission: str) -> None:
    """Invite USER to your FOLDER; prints the invitation's id (-o json: with its position)."""
    async with connect_client() as client:
        result = (await client.execute(INVITE, {"f": folder, "u": user, "m": permission}))["inviteToVFolder"]
    if out.is_json:
        out.json(result)
        return
    click.echo(result["id"])  # alone, as `session create` prints its id: `ID=$(berth vfolder invite ...)`
    out.info(f"invited {user} to {folder} ({permission}): `berth vfolder accept {result['id']}` as {user}")


@vfolder.command("withdraw")
@click.argument("folder")
@click.argument("invitation")
@click.pass_obj
@run_async
async def withdraw(out: Output, folder: str, invitation: str) -> None:
    """Withdraw INVITATION (pending) to FOLDER, as its inviter or a manager: it can no longer be accepted."""
    async with connect_client() as client:
        result = (await client.execute(WITHDRAW, {"f": folder, "i": invitation}))["withdrawVFolderInvitation"]
    out.record({"invitation": invitation, "folder": result["id"], "state": "withdrawn"},
               [("invitation", "invitation"), ("folder", "folder"), ("state", "state")])


@vfolder.command("invitations")
@click.option("--all", "everything", is_flag=True, help="Answered and withdrawn invitations too.")
@click.pass_obj
@run_async
async def invitations(out: Output, everything: bool) -> None:
    """List your invitations to folders (pending ones)."""
    async with connect_client() as client:
        rows = (await client.execute(INVITATIONS, {"all": everything}))["vfolderInvitations"]
    out.table(rows, INVITATION_COLUMNS)


@vfolder.command("accept")
@click.argument("invitation")
@click.pass_obj
@run_async
async def accept(out: Output, invitation: str) -> None:
    """Accept INVITATION: the folder is shared with you."""
    await _change(out, ACCEPT, {"i": invitation})


@vfolder.command("reject")
@click.argument("invitation")
@click.pass_obj
@run_async
async def reject(out: Output, invitation: str) -> None:
    """Reject INVITATION."""
    async with connect_client() as client:
        result = (await client.execute(REJECT, {"i": invitation}))["rejectVFolderInvitation"]
    out.record({"invitation": invitation, "folder": result["id"], "state": "rejected"},
               [("invitation", "invitation"), ("folder", "folder"), ("state", "state")])


@vfolder.command("leave")
@click.argument("folder")
@click.pass_obj
@run_async
async def leave(out: Output, folder: str) -> None:
    """Leave FOLDER, shared with you."""
    async with connect_client() as client:
        result = (await client.execute(LEAVE, {"f": folder}))["leaveVFolder"]
    out.record({"folder": result["id"], "state": "left"}, [("folder", "folder"), ("state", "state")])


@vfolder.command("set-quota")
@click.argument("folder")
@click.argument("size")
@click.pass_obj
@run_async
async def set_quota(out: Output, folder: str, size: str) -> None:
    """Cap FOLDER at SIZE, e.g. 10g (0 = no cap of its own; admins). Uploads beyond it are refused."""
    await _change(out, SET_QUOTA, {"f": folder, "b": size_bytes(size, "SIZE")})
