"""Events of the folder-count context: how many live folders a user owns, kept in the store.

``max_vfolder_count`` (a resource policy's) bounds the user folders a user owns (trashed ones
included, purged ones not). One small aggregate per user, id ``vfcount_<digest>``
(``folder_count_id``), records the count after each change; it is saved in the same transaction as
the folder's ``vfolder.created`` (count + 1) or ``vfolder.purge_requested`` (count - 1), so two
concurrent creations conflict on its version and the second one is decided again on the new count:
the limit holds exactly. A user's first count starts from the read models' (folders created before
the count existed).
"""

from __future__ import annotations

import hashlib

from contracts.envelope import Event

__all__ = ["VFolderCountChanged", "folder_count_id"]


def folder_count_id(user: str) -> str:
    """Returns the aggregate id of ``user``'s folder count: a digest, so any name gives a valid subject token."""
    return f"vfcount_{hashlib.sha256(user.encode()).hexdigest()[:40]}"


class VFolderCountChanged(Event, frozen=True, kw_only=True, tag="vfoldercount.changed"):
    """``user`` owns ``count`` live folders now, after ``folder_id`` was created or purged."""

    user: str
    count: int
    folder_id: str
