"""Storage tokens: short-lived capabilities the gateway mints and the storage service verifies.

A token grants one operation on one folder path to one user until ``exp``:
``base64url(msgspec JSON claims) + "." + base64url(HMAC-SHA256(key, payload))``, both parts
unpadded. The key is 32 random bytes shared by the gateway and the storage service (the
instance's ``storage.key``, 0600). ``verify_token`` checks the signature in constant time, the
version, the expiry (and that the lifetime is within ``MAX_TTL``), the operation, and that the
request's path is the token's path — or lies under it for ``list`` and ``archive``.

Pure: ``now`` (unix seconds) is an argument; nothing reads the clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from typing import Literal

import msgspec

__all__ = [
    "DEFAULT_TTL",
    "KEY_BYTES",
    "MAX_TOKEN_CHARS",
    "MAX_TTL",
    "OPS",
    "StorageClaims",
    "StorageOp",
    "TokenError",
    "mint_token",
    "new_key",
    "path_covers",
    "sign_token",
    "verify_token",
]

StorageOp = Literal["upload", "download", "archive", "list", "mkdir", "move", "delete"]
OPS: tuple[str, ...] = ("upload", "download", "archive", "list", "mkdir", "move", "delete")
TREE_OPS = frozenset({"list", "archive"})
"""Operations whose token path covers everything under it."""

DEFAULT_TTL = 15 * 60
"""Seconds a token lives unless the minter asks for less."""
MAX_TTL = 60 * 60
"""The longest lifetime a token may carry (exp − iat); a longer one is refused."""
KEY_BYTES = 32
MAX_TOKEN_CHARS = 16 * 1024
"""A longer token string is refused before it is decoded."""


class TokenError(Exception):
    """Raised when a token is malformed, forged, expired, or does not grant the request."""


class StorageClaims(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, gc=False):
    """What a storage token grants. ``path`` is a folder-relative POSIX path ("" = the folder's
    root); ``max_bytes`` bounds an upload (the remaining quota at issue); ``dst`` is a move's
    destination; ``quota_scope`` ("user:<name>" | "project:<name>") keys the storage service's
    reservation of in-flight upload bytes; ``iat``/``exp`` unix seconds; ``jti`` unique."""

    v: int = 1
    folder: str
    volume: str
    path: str
    op: StorageOp
    user: str
    iat: int
    exp: int
    jti: str
    max_bytes: int = 0
    dst: str = ""
    quota_scope: str = ""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(StorageClaims)


def new_key() -> bytes:
    """Returns a fresh random signing key."""
    return secrets.token_bytes(KEY_BYTES)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TokenError("malformed token") from exc


def _mac(key: bytes, payload: str) -> bytes:
    return hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest()


def sign_token(key: bytes, claims: StorageClaims) -> str:
    """Returns the token string for ``claims`` signed with ``key``."""
    if len(key) < KEY_BYTES:
        raise ValueError("a storage key is at least 32 bytes")
    if claims.exp - claims.iat > MAX_TTL or claims.exp <= claims.iat:
        raise ValueError(f"a token lives between 1 s and {MAX_TTL} s")
    payload = _b64(_encoder.encode(claims))
    return f"{payload}.{_b64(_mac(key, payload))}"


def mint_token(key: bytes, *, folder: str, volume: str, path: str, op: StorageOp, user: str, now: float,
               ttl: int = DEFAULT_TTL, max_bytes: int = 0, dst: str = "", quota_scope: str = "") -> tuple[str, int]:
    """Returns a fresh token for one operation and its expiry (unix seconds)."""
    iat = int(now)
    claims = StorageClaims(folder=folder, volume=volume, path=path, op=op, user=user, iat=iat, exp=iat + ttl,
                           jti=secrets.token_hex(16), max_bytes=max_bytes, dst=dst, quota_scope=quota_scope)
    return sign_token(key, claims), claims.exp


def path_covers(granted: str, requested: str) -> bool:
    """Returns whether ``requested`` is ``granted`` or lies under it (both normalised
    folder-relative paths; "" is the folder's root)."""
    return granted == "" or requested == granted or requested.startswith(granted + "/")


def verify_token(key: bytes, token: str, *, op: str, now: float, path: str | None = None,
                 folder: str | None = None) -> StorageClaims:
    """Returns the claims of ``token`` when it is genuine, unexpired and grants ``op`` (on
    ``path`` and ``folder`` when given); raises ``TokenError`` naming why not."""
    if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise TokenError("malformed token")
    payload, signature = token.split(".")
    if not payload.isascii():
        raise TokenError("malformed token")
    if not hmac.compare_digest(_unb64(signature), _mac(key, payload)):
        raise TokenError("bad token signature")
    try:
        claims = _decoder.decode(_unb64(payload))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise TokenError(f"malformed token claims: {exc}") from exc
    if claims.v != 1:
        raise TokenError(f"unsupported token version {claims.v}")
    if claims.exp - claims.iat > MAX_TTL:
        raise TokenError("token lifetime over the limit")
    if now >= claims.exp:
        raise TokenError("token expired")
    if claims.op != op:
        raise TokenError(f"token is for {claims.op!r}, not {op!r}")
    if folder is not None and claims.folder != folder:
        raise TokenError("token is for another folder")
    if path is not None:
        granted = path_covers(claims.path, path) if op in TREE_OPS else path == claims.path
        if not granted:
            raise TokenError("token does not cover this path")
    return claims
