"""Authenticates a request: Backend.AI HMAC signing or a bearer token.

The signed string covers the method, the request path with its query string, the
``X-BackendAI-Date``, the ``Host`` and ``Content-Type`` headers and a hash of the
body (see ``services.sdk.signing``). The date must lie within a window around
the server's clock so that a captured request cannot be replayed later, and within
the window a signature is accepted once (``services.gateway.auth.replay``): a replayed
request gets the one "authentication failed" answer.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Callable, Mapping

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from contracts.envelope import utc_now
from contracts.tenancy import Role
from services.sdk.signing import SignatureError, parse_authorization, signature_for
from services.gateway.auth.principal import AuthError, Principal
from services.gateway.auth.replay import SignatureLedger
from services.gateway.auth.tokens import principal_for_token

__all__ = ["DATE_WINDOW", "Authenticator"]

DATE_WINDOW = dt.timedelta(minutes=15)
MISSING = (
    "missing credentials: sign the request (Authorization: BackendAI signMethod=HMAC-SHA256, ...)"
    " or send Authorization: Bearer <token> from POST /auth/token"
)


def _aware(date: dt.datetime) -> dt.datetime:
    """Returns ``date`` with UTC as its zone when it has none."""
    return date if date.tzinfo is not None else date.replace(tzinfo=dt.UTC)


class Authenticator:
    """Turns request headers into a ``Principal`` or raises ``AuthError`` with the reason."""

    def __init__(
        self, pool: AsyncConnectionPool, *, window: dt.timedelta = DATE_WINDOW,
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self._pool = pool
        self._window = window
        self._clock = clock
        self._ledger = SignatureLedger()

    async def authenticate(
        self, *, method: str, path: str, headers: Mapping[str, str], body: bytes, allow_bearer: bool = True
    ) -> Principal:
        """Returns the caller of a request; ``headers`` have lower-case names."""
        authorization = (headers.get("authorization") or "").strip()
        if not authorization:
            raise AuthError(MISSING)
        if authorization[:7].lower() == "bearer ":
            if not allow_bearer:
                raise AuthError("this endpoint needs a signed request, not a bearer token")
            return await principal_for_token(self._pool, authorization[7:].strip())
        return await self._verify_signature(method, path, headers, body, authorization)

    async def _verify_signature(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes, authorization: str
    ) -> Principal:
        try:
            access_key, signature = parse_authorization(authorization)
        except SignatureError as exc:
            raise AuthError(str(exc)) from exc
        date = self._checked_date(headers.get("x-backendai-date"))
        host = headers.get("host")
        if not host:
            raise AuthError("missing Host header")
        async with self._pool.connection() as conn:
            found = await self._keypair(conn, access_key)
            if found is None:
                raise AuthError("unknown or inactive access key")
            secret_key, principal = found
            expected = signature_for(
                secret_key=secret_key, method=method, path=path, date=date, host=host,
                content_type=headers.get("content-type", ""), body=body,
            )
            if not hmac.compare_digest(expected, signature):
                raise AuthError("signature mismatch")
            if not await self._ledger.first_use(conn, access_key, signature, self._window_end(date)):
                raise AuthError("replayed signature: this signed request was accepted before")
        return principal

    def _window_end(self, date: dt.datetime) -> dt.datetime:
        """Returns when the date check starts refusing a request dated ``date``."""
        return _aware(date) + self._window

    def _checked_date(self, raw: str | None) -> dt.datetime:
        if not raw:
            raise AuthError("missing X-BackendAI-Date header")
        try:
            date = dt.datetime.fromisoformat(raw.strip())
        except ValueError as exc:
            raise AuthError(f"malformed X-BackendAI-Date {raw!r}: use ISO 8601") from exc
        if abs(self._clock() - _aware(date)) > self._window:
            raise AuthError("date outside the allowed window")
        return date

    @staticmethod
    async def _keypair(conn: AsyncConnection, access_key: str) -> tuple[str, Principal] | None:
        cur = await conn.execute(
            "SELECT secret_key, user_id, role, domain FROM keypairs WHERE access_key = %s AND is_active",
            (access_key,),
        )
        row = await cur.fetchone()
        if row is None:
            return None
        return row[0], Principal(access_key=access_key, user_id=row[1], role=Role(row[2]), domain=row[3])
