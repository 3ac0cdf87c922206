"""Reservation of in-flight upload bytes per quota scope, so concurrent uploads cannot overshoot.

The gateway puts the remaining quota at issue time into an upload token's ``max_bytes``
(min of the scope's and the folder's room). Here an upload is created only when its length,
plus every byte already reserved by unfinished uploads of the same scope, fits in the
``max_bytes`` of the token that creates it; the reservation lasts until the upload finishes
(its bytes are then usage, measured and reported), is terminated or expires. In memory: rebuilt
at start from the partial uploads on disk (``UploadStore.pending``).
"""

from __future__ import annotations

from collections import defaultdict

__all__ = ["QuotaError", "Reservations"]


class QuotaError(Exception):
    """Raised when an upload would exceed the room its token grants."""


class Reservations:
    """Bytes reserved by unfinished uploads, per quota scope; and how many each user has."""

    def __init__(self) -> None:
        self._reserved: dict[str, int] = defaultdict(int)
        self._uploads: dict[str, tuple[str, int, str]] = {}
        self._per_user: dict[str, int] = defaultdict(int)

    def reserved(self, scope: str) -> int:
        return self._reserved.get(scope, 0)

    def unfinished(self, user: str) -> int:
        """Returns how many unfinished uploads ``user`` has (on every volume)."""
        return self._per_user.get(user, 0)

    def lengths(self) -> dict[str, int]:
        """Returns the length of every unfinished upload, by id."""
        return {upload_id: length for upload_id, (_, length, _) in self._uploads.items()}

    def reserve(self, upload_id: str, scope: str, length: int, room: int, user: str = "") -> None:
        """Reserves ``length`` bytes of ``scope`` for ``upload_id`` when they fit in ``room``
        together with what is reserved already; raises ``QuotaError`` otherwise (nothing reserved)."""
        if upload_id in self._uploads:
            return
        if length > room:
            raise QuotaError(f"the upload ({length} bytes) is over the room left ({room} bytes)")
        if self.reserved(scope) + length > room:
            raise QuotaError(f"{self.reserved(scope)} bytes are reserved by other uploads of {scope}; "
                             f"{length} more would exceed the room left ({room} bytes)")
        self.restore(upload_id, scope, length, user)

    def restore(self, upload_id: str, scope: str, length: int, user: str = "") -> None:
        """Records a reservation without checking it (an upload found on disk at start)."""
        if upload_id not in self._uploads:
            self._uploads[upload_id] = (scope, length, user)
            self._reserved[scope] += length
            self._per_user[user] += 1

    def release(self, upload_id: str) -> None:
        """Ends the reservation of an upload (finished, terminated or expired); idempotent."""
        found = self._uploads.pop(upload_id, None)
        if found is not None:
            scope, length, user = found
            self._reserved[scope] -= length
            if not self._reserved[scope]:
                del self._reserved[scope]
            self._per_user[user] -= 1
            if not self._per_user[user]:
                del self._per_user[user]
