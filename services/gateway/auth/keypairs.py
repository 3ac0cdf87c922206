"""Keypairs in PostgreSQL: the ``keypairs`` table, key generation and creation.

Each creation also records a ``keypair.created`` event (aggregate id = access key):
the row is inserted first and committed only after the event is stored, so a
failure to record the event leaves no keypair behind. The secret key lives only in
the table, never in an event or a log line.
"""

from __future__ import annotations

import secrets
import string

import psycopg

from contracts.tenancy import KeypairCreated, Role
from domain.emitting import Emitter
from services.common.context import make_context
from services.gateway.auth.tenancy import Tenancy

__all__ = [
    "KEYPAIRS_DDL",
    "create_keypair",
    "ensure_admin_keypair",
    "ensure_keypairs_table",
    "new_access_key",
    "new_secret_key",
]

KEYPAIRS_DDL = """
CREATE TABLE IF NOT EXISTS keypairs (
    access_key  text PRIMARY KEY,
    secret_key  text NOT NULL,
    user_id     text NOT NULL,
    role        text NOT NULL,
    is_active   boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
)
"""

ADMIN_USER = "admin"
_ALNUM_UPPER = string.ascii_uppercase + string.digits
_ADMIN_LOCK = "SELECT pg_advisory_xact_lock(hashtext('berth.gateway.admin_keypair'))"


def new_access_key() -> str:
    """Returns a Backend.AI-style access key: ``AKIA`` and 16 uppercase letters or digits."""
    return "AKIA" + "".join(secrets.choice(_ALNUM_UPPER) for _ in range(16))


def new_secret_key() -> str:
    """Returns a 40-character URL-safe random secret key."""
    return secrets.token_urlsafe(30)[:40]


def ensure_keypairs_table(dsn: str) -> None:
    """Creates the ``keypairs`` table when missing."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(KEYPAIRS_DDL)


def create_keypair(dsn: str, user_id: str, role: Role | str = Role.USER, *, actor: str = "system") -> tuple[str, str]:
    """Creates an active keypair for ``user_id``; returns ``(access_key, secret_key)``."""
    role = Role(role)
    if not user_id.strip():
        raise ValueError("user_id must not be empty")
    ensure_keypairs_table(dsn)
    with Tenancy(dsn) as tenancy, psycopg.connect(dsn) as conn:
        return _create(conn, tenancy, user_id, role, actor)


def ensure_admin_keypair(dsn: str) -> tuple[str, str] | None:
    """Creates the first superadmin keypair when no active one exists.

    Returns the new ``(access_key, secret_key)`` only when it created it (so the
    caller prints it once), else None.
    """
    ensure_keypairs_table(dsn)
    with Tenancy(dsn) as tenancy, psycopg.connect(dsn) as conn:
        conn.execute(_ADMIN_LOCK)  # two gateways starting at once create one admin
        row = conn.execute(
            "SELECT 1 FROM keypairs WHERE role = %s AND is_active LIMIT 1", (Role.SUPERADMIN.value,)
        ).fetchone()
        if row is not None:
            return None
        return _create(conn, tenancy, ADMIN_USER, Role.SUPERADMIN, "system")


def _create(conn: psycopg.Connection, tenancy: Tenancy, user_id: str, role: Role, actor: str) -> tuple[str, str]:
    access_key, secret_key = new_access_key(), new_secret_key()
    conn.execute(
        "INSERT INTO keypairs (access_key, secret_key, user_id, role) VALUES (%s, %s, %s, %s)",
        (access_key, secret_key, user_id, role.value),
    )
    event = Emitter(access_key, 0, make_context(actor))(KeypairCreated, user=user_id, role=role)
    tenancy.record([event])  # the row commits only after the event is stored
    conn.commit()
    return access_key, secret_key
