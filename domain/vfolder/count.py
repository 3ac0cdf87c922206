"""The count of a user's live folders (``contracts.vfolder_count``), which ``decide.create`` checks
against ``max_vfolder_count``: ``current`` reads it, ``changed`` records a new one."""

from __future__ import annotations

from contracts.envelope import Event
from contracts.vfolder_count import VFolderCountChanged, folder_count_id
from domain.emitting import Context, Emitter

__all__ = ["changed", "current"]


def current(last: VFolderCountChanged | None, owned: int) -> int:
    """Returns the user's count: the last one recorded, else ``owned`` (the read models' count, for
    a user whose count was never recorded)."""
    return last.count if last is not None else owned


def changed(last: VFolderCountChanged | None, *, user: str, count: int, folder_id: str, ctx: Context) -> list[Event]:
    """Returns the event recording ``count`` (never below 0) after ``folder_id`` was created or purged."""
    emit = Emitter(folder_count_id(user), last.originator_version if last is not None else 0, ctx)
    return [emit(VFolderCountChanged, user=user, count=max(0, count), folder_id=folder_id)]
