"""Keypairs in PostgreSQL: the ``keypairs`` table (the secrets), key generation, creation
and deactivation.

Every change of a row is recorded as a tenancy event (aggregate id = access key): the
row is written first and committed only after the event is stored, so a failure to
record the event leaves the table unchanged. Every statement that writes the table also raises the
keypair epoch in its transaction (a trigger, ``keypair_cache``), which tells each gateway's cache
that what it holds may be stale. A keypair takes its role and domain from
its user, who must exist. The secret key lives only in the table, never in an event or
a log line.
"""

from __future__ import annotations

import secrets
import string

import psycopg
from psycopg_pool import AsyncConnectionPool

from contracts import tenancy_commands as tc
from contracts.tenancy import DEFAULT_POLICY, Role, user_id
from domain.emitting import Context
from domain.errors import InvalidRequestError
from domain.tenancy import UserState
from services.application.context import make_context
from services.common.pg_limits import limited_dsn
from services.gateway.auth.keypair_cache import KEYPAIR_EPOCH_DDL
from services.gateway.auth.limits_epoch import LIMITS_EPOCH_DDL
from services.application.tenancy import ADMIN_USER, Tenancy, ensure_defaults

__all__ = [
    "ADMIN_USER",
    "KEYPAIRS_DDL",
    "access_keys_of",
    "create_keypair",
    "deactivate_keypair",
    "deactivate_user",
    "ensure_admin_keypair",
    "ensure_keypairs_table",
    "issue_keypair",
    "new_access_key",
    "new_secret_key",
]

KEYPAIRS_DDL = """
SELECT pg_advisory_xact_lock(hashtext('berth.gateway.keypairs_ddl'));
CREATE TABLE IF NOT EXISTS keypairs (
    access_key  text PRIMARY KEY,
    secret_key  text NOT NULL,
    user_id     text NOT NULL,
    role        text NOT NULL,
    is_active   boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE keypairs ADD COLUMN IF NOT EXISTS domain text NOT NULL DEFAULT 'default';
CREATE INDEX IF NOT EXISTS keypairs_user ON keypairs (user_id);
""" + KEYPAIR_EPOCH_DDL + ";\n" + LIMITS_EPOCH_DDL

_ALNUM_UPPER = string.ascii_uppercase + string.digits
_ADMIN_LOCK = "SELECT pg_advisory_xact_lock(hashtext('berth.gateway.admin_keypair'))"
_USER_LOCK = "SELECT pg_advisory_xact_lock(hashtext('berth.gateway.keypairs_of:' || %s))"
"""Taken first by each transaction that issues a keypair of a user or deactivates the user: else a
deactivation's UPDATE could miss a keypair whose row an issuance (its user still active when it decided)
had not committed yet, and that keypair would outlive its user's deactivation."""


def new_access_key() -> str:
    """Returns a Backend.AI-style access key: ``AKIA`` and 16 uppercase letters or digits."""
    return "AKIA" + "".join(secrets.choice(_ALNUM_UPPER) for _ in range(16))


def new_secret_key() -> str:
    """Returns a 40-character URL-safe random secret key."""
    return secrets.token_urlsafe(30)[:40]


def ensure_keypairs_table(dsn: str) -> None:
    """Creates the ``keypairs`` table when missing, adds the columns it gained since, and the keypair
    epoch's row and trigger (``keypair_cache``)."""
    with psycopg.connect(limited_dsn(dsn)) as conn:
        conn.execute(KEYPAIRS_DDL)  # one implicit transaction: its advisory lock serialises creators


def issue_keypair(tenancy: Tenancy, dsn: str, user: str, ctx: Context, *,
                  resource_policy: str = DEFAULT_POLICY) -> tuple[str, str, int]:
    """Creates an active keypair for the existing, active ``user``; returns
    ``(access_key, secret_key, position)``. Raises a ``DomainError`` when refused."""
    access_key, secret_key = new_access_key(), new_secret_key()
    command = tc.CreateKeypair(user=user, resource_policy=resource_policy)
    with psycopg.connect(limited_dsn(dsn)) as conn:
        conn.execute(_USER_LOCK, (user,))  # decided on the user as it is once no deactivation of it runs
        owner = tenancy.get(user_id(user))
        if not isinstance(owner, UserState):
            raise InvalidRequestError(f"user {user} does not exist")
        conn.execute(
            "INSERT INTO keypairs (access_key, secret_key, user_id, role, domain) VALUES (%s, %s, %s, %s, %s)",
            (access_key, secret_key, user, owner.role.value, owner.domain),
        )
        position = tenancy.handle(access_key, command, ctx)  # the row commits only after the event is stored
        conn.commit()
    return access_key, secret_key, position


async def access_keys_of(pool: AsyncConnectionPool, user: str) -> list[str]:
    """Returns the access keys of every keypair of ``user``, deactivated ones included."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT access_key FROM keypairs WHERE user_id = %s ORDER BY access_key", (user,))
        return [row[0] for row in await cur.fetchall()]


def create_keypair(dsn: str, user: str, *, resource_policy: str = DEFAULT_POLICY,
                   actor: str = "system") -> tuple[str, str]:
    """Creates an active keypair for the existing ``user`` (role and domain are the user's);
    returns ``(access_key, secret_key)``."""
    ensure_keypairs_table(dsn)
    with Tenancy(dsn) as tenancy:
        access_key, secret_key, _ = issue_keypair(
            tenancy, dsn, user, make_context(actor), resource_policy=resource_policy)
    return access_key, secret_key


def deactivate_keypair(tenancy: Tenancy, dsn: str, access_key: str, ctx: Context) -> int:
    """Deactivates a keypair (it no longer authenticates); returns the position."""
    with psycopg.connect(limited_dsn(dsn)) as conn:
        conn.execute("UPDATE keypairs SET is_active = false WHERE access_key = %s", (access_key,))
        position = tenancy.handle(access_key, tc.DeactivateKeypair(), ctx)
        conn.commit()
    return position


def deactivate_user(tenancy: Tenancy, dsn: str, user: str, ctx: Context) -> int:
    """Deactivates a user and every keypair of theirs; returns the position."""
    with psycopg.connect(limited_dsn(dsn)) as conn:
        conn.execute(_USER_LOCK, (user,))  # every keypair of the user issued before is committed: the UPDATE sees it
        rows = conn.execute(
            "UPDATE keypairs SET is_active = false WHERE user_id = %s AND is_active RETURNING access_key", (user,)
        ).fetchall()
        position = tenancy.deactivate_user(user, [row[0] for row in rows], ctx)
        conn.commit()
    return position


def ensure_admin_keypair(dsn: str) -> tuple[str, str] | None:
    """Creates the tenancy defaults (``ensure_defaults``) and, when no active superadmin keypair
    exists, one for the superadmin user ``admin``.

    Returns the new ``(access_key, secret_key)`` only when it created it (so the caller
    prints it once), else None.
    """
    ensure_keypairs_table(dsn)
    with Tenancy(dsn) as tenancy:
        ensure_defaults(dsn, app=tenancy)
        with psycopg.connect(limited_dsn(dsn)) as conn:
            conn.execute(_ADMIN_LOCK)  # two gateways starting at once create one admin
            row = conn.execute(
                "SELECT 1 FROM keypairs WHERE role = %s AND is_active LIMIT 1", (Role.SUPERADMIN.value,)
            ).fetchone()
            if row is not None:
                return None
            access_key, secret_key, _ = issue_keypair(tenancy, dsn, ADMIN_USER, make_context("system"))
            conn.commit()  # releases the lock after the keypair is committed
    return access_key, secret_key

