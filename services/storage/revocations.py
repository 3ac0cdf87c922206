"""Access taken back from a user of a folder: tokens issued before refused, not only those asked for after.

A storage token lives up to ``MAX_TTL`` (the gateway's: 15 min); the gateway checks a user's permission only when
it mints one. Without this, a user whose share was removed (``vfolder.unshared``), who left the folder
(``vfolder.left``) or whose permission was lowered (``vfolder.permission_changed``: ``wd`` → ``ro``) kept reading,
writing and deleting with the tokens asked for before, and finished the uploads begun before, until they expired.

The storage service records, per folder and user, the time of each such event for every operation the user may
no longer do (``revoked_ops``); a token of that user for that folder and operation issued at or before it
(``iat``, seconds) is refused. A token issued after it is the gateway's word on the new permission. A mark is a
file under the volume's ``.work/revoked/`` (one JSON document per folder), so it survives a restart; a folder's
events come one after the other (its lane), so it is read, merged and replaced atomically without a lock.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from contracts.storage_token import OPS
from contracts.vfolder import VFolderPermission, is_folder_id

__all__ = ["ALLOWED_OPS", "Revocations", "revoked_ops"]

ALLOWED_OPS: dict[VFolderPermission, frozenset[str]] = {
    VFolderPermission.RO: frozenset({"download", "archive", "list"}),
    VFolderPermission.RW: frozenset({"download", "archive", "list", "upload", "mkdir", "move"}),
    VFolderPermission.WD: frozenset(OPS),
}
"""The storage operations each folder permission allows (as the gateway checks them when it mints a token)."""


def revoked_ops(permission: VFolderPermission | None) -> frozenset[str]:
    """Returns the operations a user whose permission became ``permission`` (None: none at all) may no longer do."""
    return frozenset(OPS) - (ALLOWED_OPS[permission] if permission is not None else frozenset())


class Revocations:
    """The revocation marks of one volume's folders (``<root>/<folder_id>.json``: ``{user: {op: seconds}}``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _file(self, folder_id: str) -> Path:
        if not is_folder_id(folder_id):
            raise ValueError(f"not a folder id: {folder_id!r}")
        return self.root / f"{folder_id}.json"

    def _read(self, folder_id: str) -> dict[str, dict[str, int]]:
        try:
            data = json.loads(self._file(folder_id).read_bytes())
        except FileNotFoundError:
            return {}
        return data if isinstance(data, dict) else {}

    def revoke(self, folder_id: str, user: str, ops: frozenset[str], at: int) -> None:
        """Refuses, from now on, ``user``'s tokens of the folder for ``ops`` issued at or before ``at`` (unix
        seconds); idempotent (a later mark never moves back)."""
        if not ops:
            return
        marks = self._read(folder_id)
        mine = marks.setdefault(user, {})
        for op in ops:
            mine[op] = max(int(mine.get(op, 0)), at)
        self.root.mkdir(mode=0o700, exist_ok=True)
        target = self._file(folder_id)
        tmp = target.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(marks, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)

    def refuses(self, folder_id: str, user: str, op: str, issued_at: int) -> bool:
        """Returns whether a token of ``user`` for ``op`` on the folder, issued at ``issued_at``, was revoked."""
        mark = self._read(folder_id).get(user, {}).get(op)
        return mark is not None and issued_at <= int(mark)

    def forget(self, folder_id: str) -> None:
        """Drops the folder's marks (it is purged: its tokens find nothing anyway)."""
        with contextlib.suppress(FileNotFoundError):
            self._file(folder_id).unlink()
