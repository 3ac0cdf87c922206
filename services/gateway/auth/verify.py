"""Authenticates a request: Backend.AI HMAC signing or a bearer token.

The signed string covers the method, the request path with its query string, the
``X-BackendAI-Date``, the ``Host`` and ``Content-Type`` headers and a hash of the
body (see ``services.sdk.signing``). What does not need the body is checked before it is read (``screen``:
a bearer token; a signed request's form, date, Host and access key), the signature after (``verify``). The date must lie within a window around
the server's clock so that a captured request cannot be replayed later, and within
the window a signature is accepted once (``services.gateway.auth.replay``): a replayed
request gets the one "authentication failed" answer.

The keypair comes from this process's cache (``services.gateway.auth.keypair_cache``) while the
keypair epoch that the replay ledger's insert returns is the one it was read at; otherwise it is
read again before the request is let through. A warm signed request is one statement, which also
returns the limits epoch that the caller's ``Principal`` carries to the policy-limits cache.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, NamedTuple

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from contracts.envelope import utc_now
from services.sdk.signing import SignatureError, parse_authorization, signature_for
from services.gateway.auth.keypair_cache import CachedKeypair, KeypairCache, read_keypair
from services.gateway.auth.principal import AuthError, Principal
from services.gateway.auth.replay import SignatureLedger
from services.gateway.auth.tokens import principal_for_token

__all__ = ["DATE_WINDOW", "Authenticator", "SignedClaim"]

DATE_WINDOW = dt.timedelta(minutes=15)
MISSING = (
    "missing credentials: sign the request (Authorization: BackendAI signMethod=HMAC-SHA256, ...)"
    " or send Authorization: Bearer <token> from POST /auth/token"
)


def _aware(date: dt.datetime) -> dt.datetime:
    """Returns ``date`` with UTC as its zone when it has none."""
    return date if date.tzinfo is not None else date.replace(tzinfo=dt.UTC)


class SignedClaim(NamedTuple):
    """A signed request as ``Authenticator.screen`` found it before its body: what ``verify`` checks then."""

    signature: str
    date: dt.datetime
    host: str
    keypair: CachedKeypair
    """The keypair its access key names, as cached or read at the screening."""


class Authenticator:
    """Turns request headers into a ``Principal`` or raises ``AuthError`` with the reason."""

    def __init__(
        self, pool: AsyncConnectionPool, *, window: dt.timedelta = DATE_WINDOW,
        clock: Callable[[], dt.datetime] = utc_now, keypairs: KeypairCache | None = None,
    ) -> None:
        """Authenticates against the tables of ``pool``; ``keypairs`` is the cache of keypairs
        (``KeypairCache(size=0)``: none kept, each request reads its keypair)."""
        self._pool = pool
        self._window = window
        self._clock = clock
        self._ledger = SignatureLedger()
        self._keypairs = keypairs if keypairs is not None else KeypairCache()

    async def authenticate(
        self, *, method: str, path: str, headers: Mapping[str, str], body: bytes, allow_bearer: bool = True
    ) -> Principal:
        """Returns the caller of a request; ``headers`` have lower-case names (``screen``, then ``verify``)."""
        found = await self.screen(headers=headers, allow_bearer=allow_bearer)
        if isinstance(found, Principal):
            return found
        return await self.verify(found, method=method, path=path, content_type=headers.get("content-type", ""),
                                 body=body)

    async def screen(self, *, headers: Mapping[str, str], allow_bearer: bool = True) -> Principal | SignedClaim:
        """What can be checked before the body is read: returns the caller of a bearer token (the body plays no part
        in it), or a signed request's claim once its ``Authorization`` parses, its date lies within the window, it
        names its Host and its access key is an active keypair's; raises ``AuthError`` otherwise. So a request that
        cannot pass is refused before its body is read (up to ``MAX_BODY`` held per connection of anyone)."""
        authorization = (headers.get("authorization") or "").strip()
        if not authorization:
            raise AuthError(MISSING)
        if authorization[:7].lower() == "bearer ":
            if not allow_bearer:
                raise AuthError("this endpoint needs a signed request, not a bearer token")
            return await principal_for_token(self._pool, authorization[7:].strip())
        try:
            access_key, signature = parse_authorization(authorization)
        except SignatureError as exc:
            raise AuthError(str(exc)) from exc
        date = self._checked_date(headers.get("x-backendai-date"))
        host = headers.get("host")
        if not host:
            raise AuthError("missing Host header")
        keypair = self._keypairs.get(access_key)
        if keypair is None:
            async with self._pool.connection() as conn:
                keypair = await self._read(conn, access_key)
        return SignedClaim(signature, date, host, keypair)

    async def verify(self, claim: SignedClaim, *, method: str, path: str, content_type: str,
                     body: bytes) -> Principal:
        """Returns the caller of a signed request ``screen`` let through, once its signature (of its body too) is
        its keypair's and was not accepted before; raises ``AuthError`` otherwise."""
        signed = {"method": method, "path": path, "date": claim.date, "host": claim.host,
                  "content_type": content_type, "body": body}
        keypair = claim.keypair
        access_key = keypair.principal.access_key
        async with self._pool.connection() as conn:
            _check_signature(keypair, claim.signature, signed)
            recorded = await self._ledger.record(conn, access_key, claim.signature, self._window_end(claim.date))
            if recorded.epoch != keypair.epoch:  # a keypair changed since it was read: read it as of now
                keypair = await self._read(conn, access_key)
                _check_signature(keypair, claim.signature, signed)
            self._keypairs.put(keypair)  # its signature matched
            if not recorded.first_use:
                raise AuthError("replayed signature: this signed request was accepted before")
        return replace(keypair.principal, limits_epoch=recorded.limits_epoch)

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

    async def _read(self, conn: AsyncConnection, access_key: str) -> CachedKeypair:
        try:
            return await read_keypair(conn, access_key)
        except AuthError:
            self._keypairs.drop(access_key)
            raise


def _check_signature(keypair: CachedKeypair, signature: str, signed: dict[str, Any]) -> None:
    """Raises ``AuthError`` unless ``signature`` is the keypair's signature of the request ``signed``."""
    if not hmac.compare_digest(signature_for(secret_key=keypair.secret_key, **signed), signature):
        raise AuthError("signature mismatch")
