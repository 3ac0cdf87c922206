"""Reservation of in-flight upload bytes per quota scope, so concurrent uploads cannot overshoot.

The gateway puts the remaining quota at issue time into an upload token's ``max_bytes``
(min of the scope's and the folder's room). Here an upload is created only when its length,
plus every byte already reserved by unfinished uploads of the same scope, fits in the
``max_bytes`` of the token that creates it; the reservation lasts until the upload finishes
(its bytes are then usage, measured and reported), is terminated or expires. In memory: rebuilt
at start from the partial uploads on disk (``UploadStore.pending``).

A token's room is the gateway's view when it minted it, and a token lives up to ``MAX_TTL``: the bytes of the
uploads of its scope finished after its issue are not in it. They are counted here (``finished``), for an hour:
an upload is created only when its length, the reserved bytes and the bytes finished since the second after its
token's issue (``iat`` + 1: what the gateway cannot have seen) fit in its room. Without this, tokens asked for in
a burst, before any upload, each carried the whole room, and used one after the other stored the quota as many
times as there were tokens (5 tokens of a 1000-byte folder quota: 5000 bytes). Uploads finished within the
second of a token's issue are not counted against it (the gateway may have counted them already): what one
client uploads in about a second is all a burst may still add. Lost at a restart (within the hour).
"""

from __future__ import annotations

import bisect
import time
from collections import defaultdict

from contracts.storage_token import MAX_TTL

__all__ = ["QuotaError", "Reservations"]


class QuotaError(Exception):
    """Raised when an upload would exceed the room its token grants."""


class _Finished:
    """The uploads of one scope finished lately: their times, oldest first, and the bytes finished before each (a
    running total), so that the bytes finished since a time are one bisection, whatever their number (a sum over
    them cost each upload's creation as much as the scope's uploads of the last hour)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.before: list[int] = []
        self.total = 0

    def add(self, at: float, length: int) -> None:
        self.times.append(max(at, self.times[-1]) if self.times else at)  # kept in order if the clock stepped back
        self.before.append(self.total)
        self.total += length

    def since(self, at: float) -> int:
        index = bisect.bisect_left(self.times, at)
        return self.total - self.before[index] if index < len(self.times) else 0

    def keep_from(self, at: float) -> bool:
        """Forgets the uploads finished before ``at``; returns whether any is left."""
        index = bisect.bisect_left(self.times, at)
        del self.times[:index], self.before[:index]
        return bool(self.times)


class Reservations:
    """Bytes reserved by unfinished uploads, per quota scope; and how many each user has."""

    def __init__(self) -> None:
        self._reserved: dict[str, int] = defaultdict(int)
        self._uploads: dict[str, tuple[str, int, str]] = {}
        self._per_user: dict[str, int] = defaultdict(int)
        self._finished: dict[str, _Finished] = {}
        """Per scope, the uploads finished within the last ``MAX_TTL`` seconds."""

    def reserved(self, scope: str) -> int:
        return self._reserved.get(scope, 0)

    def unfinished(self, user: str) -> int:
        """Returns how many unfinished uploads ``user`` has (on every volume)."""
        return self._per_user.get(user, 0)

    def lengths(self) -> dict[str, int]:
        """Returns the length of every unfinished upload, by id."""
        return {upload_id: length for upload_id, (_, length, _) in self._uploads.items()}

    def reserve(self, upload_id: str, scope: str, length: int, room: int, user: str = "",
                issued_at: int | None = None) -> None:
        """Reserves ``length`` bytes of ``scope`` for ``upload_id`` when they fit in ``room`` (the room of a token
        issued at ``issued_at``, unix seconds) together with what is reserved already and what was finished since
        the token's issue; raises ``QuotaError`` otherwise (nothing reserved)."""
        if upload_id in self._uploads:
            return
        if length > room:
            raise QuotaError(f"the upload ({length} bytes) is over the room left ({room} bytes)")
        if self.reserved(scope) + length > room:
            raise QuotaError(f"{self.reserved(scope)} bytes are reserved by other uploads of {scope}; "
                             f"{length} more would exceed the room left ({room} bytes)")
        since = self.finished_since(scope, issued_at + 1) if issued_at is not None else 0
        if since + self.reserved(scope) + length > room:
            raise QuotaError(f"{since} bytes of {scope} were uploaded since this token was issued; {length} more would "
                             f"exceed the room it grants ({room} bytes): ask for a new token")
        self.restore(upload_id, scope, length, user)

    def finished(self, scope: str, length: int, at: float | None = None) -> None:
        """Records that an upload of ``length`` bytes of ``scope`` finished (now, or at ``at``)."""
        at = time.time() if at is None else at
        self._prune(at)
        if length:
            self._finished.setdefault(scope, _Finished()).add(at, length)

    def finished_since(self, scope: str, since: float) -> int:
        """Returns the bytes of the uploads of ``scope`` finished at or after ``since`` (unix seconds)."""
        done = self._finished.get(scope)
        return 0 if done is None else done.since(since)

    def _prune(self, now: float) -> None:
        for scope in list(self._finished):
            if not self._finished[scope].keep_from(now - MAX_TTL):
                del self._finished[scope]

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
