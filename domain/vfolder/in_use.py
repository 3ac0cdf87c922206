"""A folder in use: the live sessions that mount it, and the refusal of what would pull it from under
them (``trash``, ``purge``), as Backend.AI refuses to delete a folder mounted by a running kernel; and of what would
take a user's access from under their own sessions (``unshare``, ``leave``, a lower permission): the agent mounted
it at the start, and the kernel kept reading and writing it after the user lost it.

The caller finds the sessions (``services.application.vfolders``): a live session is one not ended
(PENDING through TERMINATING) whose recorded mounts include the folder.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from domain.errors import InvalidTransitionError
from domain.vfolder.access import Actor
from domain.vfolder.state import VFolderState

__all__ = ["MAX_SESSIONS_NAMED", "MountingSession", "check_not_mounted", "users_sessions"]

MAX_SESSIONS_NAMED = 5
"""The most of the actor's own sessions a refusal names one by one (the rest are counted)."""


class MountingSession(msgspec.Struct, frozen=True, kw_only=True):
    """A live session whose mounts include a folder."""

    id: str
    name: str
    user: str
    """The session's user (its owner's user name)."""


def check_not_mounted(folder: VFolderState, mounted_by: Sequence[MountingSession], actor: Actor, what: str) -> None:
    """Raises InvalidTransitionError when live sessions mount ``folder``, naming the actor's own by name
    and id; other users' sessions are only counted (they are not the actor's to see)."""
    if not mounted_by:
        return
    own = [f"{s.name} ({s.id})" for s in mounted_by if s.user == actor.user]
    parts = own[:MAX_SESSIONS_NAMED]
    if len(own) > len(parts):
        parts.append(f"{len(own) - len(parts)} more of yours")
    if others := len(mounted_by) - len(own):
        parts.append(f"{others} of other users")
    raise InvalidTransitionError(f"folder {folder.name!r} is mounted by live session(s) {', '.join(parts)}: "
                                 f"{what} once they have ended")


def users_sessions(mounted_by: Sequence[MountingSession], user: str) -> list[MountingSession]:
    """Returns the sessions of ``user`` among ``mounted_by``."""
    return [session for session in mounted_by if session.user == user]
