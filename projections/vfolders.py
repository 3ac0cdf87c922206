"""Read models of the vfolder context: ``vfolders`` (one row per folder, purged ones kept with
status ``purged``), ``vfolder_shares`` (who has it shared, directly or by an accepted
invitation, and with which permission), ``vfolder_invitations`` (state ``pending``, ``accepted``,
``rejected`` or ``withdrawn``: ended unanswered, ``vfolder.invitation_withdrawn``) and
``vfolder_scope_limits`` (a project's ``project.storage_limit_set``).

Rows take every value from events; the status follows ``domain.vfolder.state`` (a restore goes
back to ``ready`` when the folder was ever provisioned, else ``error``). Content events move
only ``version``, ``updated_at`` and ``last_position`` (the files are not a read model: storage
lists them).
"""

from __future__ import annotations

from functools import singledispatch

from contracts import tenancy as tev
from contracts import vfolder as ev
from contracts.envelope import Event
from contracts.vfolder import VFolderStatus, quota_scope_of
from projections.delivery import Entry
from projections.writer import Writer

__all__ = ["apply_event"]


@singledispatch
def apply_event(event: Event, w: Writer, entry: Entry) -> None:
    """Applies ``event`` (of ``entry``) to the folder tables, by its type; this default, for events that do not
    concern folders (and name claims), changes nothing (``runner.handlers`` leaves it out)."""


def _update(w: Writer, event: Event, entry: Entry, assignments: str = "", *values: object) -> None:
    sets = f"{assignments}, " if assignments else ""
    w.execute_one(
        f"UPDATE vfolders SET {sets}updated_at = %s, version = %s, last_position = %s WHERE folder_id = %s",
        (*values, event.timestamp, event.originator_version, entry.position, event.originator_id),
        f"no row in vfolders for {type(event).type_name()} of {event.originator_id}",
    )


@apply_event.register
def _(event: ev.VFolderCreated, w: Writer, entry: Entry) -> None:
    w.execute(
        "INSERT INTO vfolders (folder_id, name, volume, owner_kind, owner, domain, quota_scope, usage_mode, permission,"
        " cloneable, clone_of, status, status_detail, quota_limit, usage_bytes, usage_files, created_by, created_at,"
        " updated_at, version, last_position)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, NULL, 0, 0, 0, %s, %s, %s, %s, %s)",
        (event.originator_id, event.name, event.volume, event.owner_kind.value, event.owner, event.domain,
         event.quota_scope, event.usage_mode.value, event.permission.value, event.cloneable, event.clone_of,
         VFolderStatus.PROVISIONING.value, event.by, event.timestamp, event.timestamp, event.originator_version,
         entry.position),
    )


@apply_event.register
def _(event: ev.VFolderProvisioned, w: Writer, entry: Entry) -> None:
    _update(w, event, entry, "status = CASE WHEN status IN ('provisioning', 'error') THEN 'ready' ELSE status END,"
            " status_detail = NULL")


@apply_event.register
def _(event: ev.VFolderProvisionFailed, w: Writer, entry: Entry) -> None:
    _update(w, event, entry, "status = 'error', status_detail = %s", event.reason)


@apply_event.register
def _(event: ev.VFolderRenamed, w: Writer, entry: Entry) -> None:
    _update(w, event, entry, "name = %s", event.name)


def _set_share(w: Writer, folder_id: str, user: str, permission: str) -> None:
    w.execute(
        "INSERT INTO vfolder_shares (folder_id, user_name, permission) VALUES (%s, %s, %s)"
        " ON CONFLICT (folder_id, user_name) DO UPDATE SET permission = EXCLUDED.permission",
        (folder_id, user, permission),
    )


def _drop_share(w: Writer, folder_id: str, user: str) -> None:
    w.execute("DELETE FROM vfolder_shares WHERE folder_id = %s AND user_name = %s", (folder_id, user))


@apply_event.register(ev.VFolderShared)
@apply_event.register(ev.VFolderPermissionChanged)
def _(event: ev.VFolderShared | ev.VFolderPermissionChanged, w: Writer, entry: Entry) -> None:
    _set_share(w, event.originator_id, event.user, event.permission.value)
    _update(w, event, entry)


@apply_event.register(ev.VFolderUnshared)
@apply_event.register(ev.VFolderLeft)
def _(event: ev.VFolderUnshared | ev.VFolderLeft, w: Writer, entry: Entry) -> None:
    _drop_share(w, event.originator_id, event.user)
    _update(w, event, entry)


@apply_event.register
def _(event: ev.VFolderInvited, w: Writer, entry: Entry) -> None:
    w.execute(
        "INSERT INTO vfolder_invitations (invitation_id, folder_id, inviter, invitee, permission, state, created_at,"
        " updated_at) VALUES (%s, %s, %s, %s, %s, 'pending', %s, %s)",
        (event.invitation_id, event.originator_id, event.by, event.invitee, event.permission.value, event.timestamp,
         event.timestamp),
    )
    _update(w, event, entry)


def _answer(w: Writer, event: ev.VFolderInvitationAccepted | ev.VFolderInvitationRejected
            | ev.VFolderInvitationWithdrawn, state: str) -> None:
    w.execute_one("UPDATE vfolder_invitations SET state = %s, updated_at = %s WHERE invitation_id = %s",
                  (state, event.timestamp, event.invitation_id), f"no invitation {event.invitation_id}")


@apply_event.register
def _(event: ev.VFolderInvitationAccepted, w: Writer, entry: Entry) -> None:
    _answer(w, event, "accepted")
    w.execute(
        "INSERT INTO vfolder_shares (folder_id, user_name, permission)"
        " SELECT folder_id, invitee, permission FROM vfolder_invitations WHERE invitation_id = %s"
        " ON CONFLICT (folder_id, user_name) DO UPDATE SET permission = EXCLUDED.permission",
        (event.invitation_id,),
    )
    _update(w, event, entry)


@apply_event.register
def _(event: ev.VFolderInvitationRejected, w: Writer, entry: Entry) -> None:
    _answer(w, event, "rejected")
    _update(w, event, entry)


@apply_event.register
def _(event: ev.VFolderInvitationWithdrawn, w: Writer, entry: Entry) -> None:
    """A withdrawn (or superseded) invitation leaves the pending ones: it is kept, as answered ones are."""
    _answer(w, event, "withdrawn")
    _update(w, event, entry)


_STATUS_CHANGES: dict[type[Event], str] = {
    ev.VFolderTrashed: "status = 'trashed'",
    ev.VFolderRestored: "status = CASE WHEN status_detail IS NULL THEN 'ready' ELSE 'error' END",
    ev.VFolderPurgeRequested: "status = 'purging'",
    ev.VFolderPurged: "status = 'purged', usage_bytes = 0, usage_files = 0, uploaded_bytes = 0",
}
"""The lifecycle events that only move a folder's status (trash, restore, purge)."""


def _status_change(event: Event, w: Writer, entry: Entry) -> None:
    _update(w, event, entry, _STATUS_CHANGES[type(event)])


for _event_type in _STATUS_CHANGES:
    apply_event.register(_event_type, _status_change)


@apply_event.register
def _(event: ev.VFolderQuotaSet, w: Writer, entry: Entry) -> None:
    _update(w, event, entry, "quota_limit = %s", event.limit_bytes)


@apply_event.register
def _(event: ev.VFolderUsageMeasured, w: Writer, entry: Entry) -> None:
    _update(w, event, entry, "usage_bytes = %s, usage_files = %s, uploaded_bytes = 0", event.bytes, event.files)


@apply_event.register
def _(event: ev.VFolderFileUploaded, w: Writer, entry: Entry) -> None:
    _update(w, event, entry, "uploaded_bytes = uploaded_bytes + %s", event.size)


@apply_event.register(ev.VFolderFilesDeleted)
@apply_event.register(ev.VFolderFileMoved)
@apply_event.register(ev.VFolderDirectoryCreated)
def _(event: Event, w: Writer, entry: Entry) -> None:
    _update(w, event, entry)


@apply_event.register
def _(event: tev.ProjectStorageLimitSet, w: Writer, entry: Entry) -> None:
    w.execute(
        "INSERT INTO vfolder_scope_limits (quota_scope, limit_bytes) VALUES (%s, %s)"
        " ON CONFLICT (quota_scope) DO UPDATE SET limit_bytes = EXCLUDED.limit_bytes",
        (quota_scope_of("project", event.originator_id.removeprefix("project_")), event.max_quota_scope_size),
    )
