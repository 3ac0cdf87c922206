"""The gateway's side of the storage service: the token key, minting tokens, and the internal file
operations over HTTP (``GET /files``, ``POST /mkdir``, ``POST /move``, ``POST /delete``), each
with a token the gateway mints for that one operation (``Authorization: Bearer <token>``).

The key is read from ``BERTH_STORAGE_KEY_FILE`` (default ``<data dir>/storage.key``, written by
the storage service at its first start) on first use; until it exists, and while the storage
service cannot be reached (``BERTH_STORAGE_URL``), these operations are UNAVAILABLE.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import httpx

from contracts.storage_token import KEY_BYTES, StorageOp, mint_token
from services.common.settings import Settings
from services.gateway.errors import BAD_INPUT, NOT_FOUND, UNAVAILABLE, GatewayError

__all__ = ["MAX_LISTING", "Minted", "StorageClient", "TIMEOUT"]

TIMEOUT = 30.0
"""Seconds a file operation may take at the storage service."""
MAX_LISTING = 10_000
"""The most directory entries a listing returns."""


class Minted:
    """A token, its expiry and the URL it is used at."""

    def __init__(self, token: str, expires: int, url: str) -> None:
        self.token, self.url = token, url
        self.expires_at = dt.datetime.fromtimestamp(expires, dt.UTC)


class StorageClient:
    """Mints storage tokens and calls the storage service's file operations."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._key: bytes | None = None

    @property
    def base_url(self) -> str:
        url = self._settings.storage_url.rstrip("/")
        if not url:
            raise GatewayError(UNAVAILABLE, "the storage service is not configured (BERTH_STORAGE_URL)")
        return url

    def key(self) -> bytes:
        if self._key is None:
            path = Path(self._settings.storage_key_file) if self._settings.storage_key_file else (
                Path(self._settings.data_dir) / "storage.key")
            try:
                key = path.read_bytes()
            except OSError as exc:
                raise GatewayError(UNAVAILABLE, f"the storage key {path} cannot be read ({exc.strerror}): is the "
                                                "storage service running?") from exc
            if len(key) < KEY_BYTES:
                raise GatewayError(UNAVAILABLE, f"the storage key {path} is shorter than {KEY_BYTES} bytes")
            self._key = key
        return self._key

    def mint(self, *, folder: str, volume: str, path: str, op: StorageOp, user: str, quota_scope: str,
             max_bytes: int = 0, dst: str = "") -> Minted:
        token, expires = mint_token(self.key(), folder=folder, volume=volume, path=path, op=op, user=user,
                                    now=time.time(), max_bytes=max_bytes, dst=dst, quota_scope=quota_scope)
        return Minted(token, expires, self.base_url)

    async def call(self, method: str, route: str, minted: Minted, *, params: dict[str, Any] | None = None,
                   body: dict[str, Any] | None = None) -> Any:
        """Returns the JSON answer of one file operation; its refusal as a GraphQL error."""
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT) as client:
                response = await client.request(method, f"{minted.url}{route}", params=params, json=body,
                                                headers={"Authorization": f"Bearer {minted.token}"})
        except httpx.HTTPError as exc:
            raise GatewayError(UNAVAILABLE, f"the storage service did not answer: {type(exc).__name__}") from exc
        if response.status_code >= 500:
            raise GatewayError(UNAVAILABLE, f"the storage service failed: {_message(response)}")
        if response.status_code == 404:
            raise GatewayError(NOT_FOUND, _message(response))
        if response.status_code >= 400:
            raise GatewayError(BAD_INPUT, _message(response))
        return response.json() if response.content else None


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:500] or f"HTTP {response.status_code}"
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return data["error"][:500]
    return f"HTTP {response.status_code}"
