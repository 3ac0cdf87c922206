"""The keypairs a gateway process has authenticated, kept in memory and checked against the keypair epoch.

``keypair_epoch`` is one row, one number, raised by a trigger on the ``keypairs`` table after every
statement that writes it (issue, deactivation of a keypair or of a user, any future writer, a manual
``UPDATE`` too), in that statement's transaction. A cached keypair carries the epoch it was read with
(read in the same statement, so one snapshot), and it is used only while the epoch is still that
number. The current epoch costs no round trip of its own: the replay ledger's insert, which every
signed request makes anyway, returns it (``services.gateway.auth.replay``). A deactivation commits
the row and the new epoch together before its mutation returns; any request of any gateway whose
ledger insert starts after that sees the new epoch, reads the keypair again and is refused.

Why a row and not a sequence: ``nextval`` is not transactional, so a reader could see the new epoch
before the change commits, cache the old row under it and keep it. Why one epoch for all keypairs:
checking a per-keypair version would read the keypairs table on every request again. The price: any
change of any keypair makes each gateway read each keypair once more, which is rare (admin acts).
Only keypairs whose signature matched are cached (at most ``MAX_CACHED``, least recently used dropped
first): made-up access keys cannot fill it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from psycopg import AsyncConnection

from contracts.tenancy import Role
from services.gateway.auth.epochs import epoch_row_ddl
from services.gateway.auth.principal import AuthError, Principal

__all__ = ["EPOCH", "KEYPAIR_EPOCH_DDL", "MAX_CACHED", "CachedKeypair", "KeypairCache", "read_keypair"]

MAX_CACHED = 10_000
"""Keypairs kept at most per gateway process."""

KEYPAIR_EPOCH_DDL = epoch_row_ddl("keypair_epoch", "berth_keypair_epoch_bump") + """;
CREATE OR REPLACE TRIGGER keypairs_epoch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON keypairs
    FOR EACH STATEMENT EXECUTE FUNCTION berth_keypair_epoch_bump()
"""
"""The epoch row and its trigger (run after the ``keypairs`` table's DDL, under its advisory lock)."""

EPOCH = "(SELECT epoch FROM keypair_epoch)"
"""The current epoch as a scalar subquery, for statements that read it along with their own work."""

_READ = (
    f"SELECT {EPOCH}, k.secret_key, k.user_id, k.role, k.domain FROM (SELECT 1) AS one"
    " LEFT JOIN keypairs k ON k.access_key = %s AND k.is_active"
)


@dataclass(frozen=True, slots=True)
class CachedKeypair:
    """An active keypair as read at ``epoch``."""

    secret_key: str
    principal: Principal
    epoch: int


async def read_keypair(conn: AsyncConnection, access_key: str) -> CachedKeypair:
    """Returns the active keypair ``access_key`` with the current epoch (one statement, one snapshot);
    raises ``AuthError`` when it is unknown or inactive."""
    cur = await conn.execute(_READ, (access_key,))
    row = await cur.fetchone()
    assert row is not None  # the LEFT JOIN always yields the epoch
    if row[1] is None:
        raise AuthError("unknown or inactive access key")
    principal = Principal(access_key=access_key, user_id=row[2], role=Role(row[3]), domain=row[4])
    return CachedKeypair(secret_key=row[1], principal=principal, epoch=row[0])


class KeypairCache:
    """The keypairs of this process by access key; an entry is valid only at its own epoch."""

    def __init__(self, *, size: int = MAX_CACHED) -> None:
        self._size = size
        self._known: OrderedDict[str, CachedKeypair] = OrderedDict()

    def get(self, access_key: str) -> CachedKeypair | None:
        """Returns the keypair as last read, whatever its epoch, or None."""
        found = self._known.get(access_key)
        if found is not None:
            self._known.move_to_end(access_key)
        return found

    def put(self, keypair: CachedKeypair) -> None:
        """Keeps ``keypair`` unless a newer reading of it is kept already."""
        key = keypair.principal.access_key
        known = self._known.get(key)
        if known is None or known.epoch <= keypair.epoch:
            self._known[key] = keypair
        self._known.move_to_end(key)
        while len(self._known) > self._size:
            self._known.popitem(last=False)

    def drop(self, access_key: str) -> None:
        """Forgets ``access_key`` (found unknown or inactive)."""
        self._known.pop(access_key, None)

    def __len__(self) -> int:
        return len(self._known)
