"""Bearer tokens for browsers and websockets: opaque random strings, stored only as SHA-256 hashes."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from psycopg_pool import AsyncConnectionPool

from contracts.tenancy import Role
from services.gateway.auth.limits_epoch import LIMITS_EPOCH
from services.gateway.auth.principal import AuthError, Principal

__all__ = ["TOKENS_DDL", "TOKEN_LIVE", "TOKEN_TTL", "issue_token", "principal_for_token"]

TOKEN_TTL = dt.timedelta(hours=12)
TOKEN_LIVE = "t.expires_at > now()"
"""When the token ``t`` (a row of ``auth_tokens``) is valid: for a request as for an open websocket (``revocation``)."""

TOKENS_DDL = """
CREATE TABLE IF NOT EXISTS auth_tokens (
    token_hash  text PRIMARY KEY,
    access_key  text NOT NULL REFERENCES keypairs (access_key),
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS auth_tokens_expires ON auth_tokens (expires_at)
"""


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_token(pool: AsyncConnectionPool, access_key: str, *, ttl: dt.timedelta = TOKEN_TTL) -> tuple[str, dt.datetime]:
    """Stores a new token for ``access_key``; returns ``(token, expires_at)``. Expired tokens are purged."""
    token = secrets.token_urlsafe(32)
    expires_at = dt.datetime.now(dt.UTC).replace(microsecond=0) + ttl
    async with pool.connection() as conn:
        await conn.execute("DELETE FROM auth_tokens WHERE expires_at < now()")
        await conn.execute(
            "INSERT INTO auth_tokens (token_hash, access_key, expires_at) VALUES (%s, %s, %s)",
            (_hash(token), access_key, expires_at),
        )
    return token, expires_at


async def principal_for_token(pool: AsyncConnectionPool, token: str) -> Principal:
    """Returns the caller a token stands for; raises ``AuthError`` when it is unknown, expired or revoked."""
    token_hash = _hash(token)
    async with pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT k.access_key, k.user_id, k.role, k.domain, {LIMITS_EPOCH} FROM auth_tokens t"
            " JOIN keypairs k ON k.access_key = t.access_key"
            f" WHERE t.token_hash = %s AND {TOKEN_LIVE} AND k.is_active",
            (token_hash,),
        )
        row = await cur.fetchone()
    if row is None:
        raise AuthError("unknown or expired token")
    return Principal(access_key=row[0], user_id=row[1], role=Role(row[2]), domain=row[3], limits_epoch=row[4],
                     token_hash=token_hash)
