"""A small GraphQL client for Berth: signed HTTP requests and graphql-transport-ws subscriptions.

    async with BerthClient("http://127.0.0.1:8080", access_key, secret_key) as client:
        data = await client.execute("query { agents { agentId } }")
        async for data in client.subscribe(SUBSCRIPTION, {"sessionId": sid}):
            ...

Every request is signed with the keypair (Backend.AI HMAC); a GraphQL error raises
``BerthAPIError(code, message)`` with ``extensions.code`` (or ``HTTP_<status>``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from services.sdk.signing import sign_request

__all__ = ["BerthAPIError", "BerthClient"]

CREATE_SESSION = "mutation($input: CreateSessionInput!) { createSession(input: $input) { sessionId position } }"
REQUEST_ATTEMPTS = 3
"""Times ``create_session`` sends a request whose answer was lost (connection reset, timeout)."""
RETRY_DELAY = 0.5
"""Seconds before its first retry (then twice that)."""
GRAPHQL_PATH = "/graphql"
TOKEN_PATH = "/auth/token"
PROTOCOL = "graphql-transport-ws"


class BerthAPIError(Exception):
    """Raised when the gateway refuses a request; ``code`` is the GraphQL ``extensions.code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _raise_first(errors: list[dict[str, Any]], fallback: str = "GRAPHQL_ERROR") -> None:
    first = errors[0] if errors else {}
    code = (first.get("extensions") or {}).get("code") or fallback
    raise BerthAPIError(str(code), str(first.get("message", "unknown error")))


class BerthClient:
    """Talks to one gateway as one keypair; ``url`` is the gateway's base URL or its ``/graphql`` URL."""

    def __init__(
        self, url: str, access_key: str, secret_key: str, *,
        transport: httpx.AsyncBaseTransport | None = None, timeout: float = 30.0,
    ) -> None:
        base = url.rstrip("/")
        base = base[: -len(GRAPHQL_PATH)] if base.endswith(GRAPHQL_PATH) else base
        self.base_url = base
        self.graphql_url = base + GRAPHQL_PATH
        self.access_key = access_key
        self._secret_key = secret_key
        self._http = httpx.AsyncClient(transport=transport, timeout=timeout)
        self._ids = itertools.count(1)

    async def __aenter__(self) -> BerthClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Closes the HTTP connections."""
        await self._http.aclose()

    def signed_headers(self, method: str, url: str, body: bytes) -> dict[str, str]:
        """Returns the headers that sign a request to ``url`` (path with query string, and host)."""
        parsed = httpx.URL(url)
        return sign_request(
            access_key=self.access_key, secret_key=self._secret_key, method=method,
            path=parsed.raw_path.decode("ascii"), host=parsed.netloc.decode("ascii"), body=body,
        )

    async def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Runs a query or mutation; returns its ``data``; raises ``BerthAPIError`` on any error."""
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        response = await self._http.post(
            self.graphql_url, content=body, headers=self.signed_headers("POST", self.graphql_url, body)
        )
        document = self._document(response)
        if document.get("errors"):
            _raise_first(document["errors"])
        return document.get("data") or {}

    async def create_session(self, input: dict[str, Any]) -> dict[str, Any]:
        """Requests a session (a ``CreateSessionInput``); returns ``{sessionId, position}``.

        The request carries an ``idempotencyKey`` (``input``'s, else a fresh random one) and is sent
        again, with that key and signed afresh, when its answer is lost (up to ``REQUEST_ATTEMPTS``
        times): however often it reaches the gateway, it creates one session."""
        input = {**input, "idempotencyKey": input.get("idempotencyKey") or uuid.uuid4().hex}
        for attempt in range(1, REQUEST_ATTEMPTS + 1):
            try:
                return dict((await self.execute(CREATE_SESSION, {"input": input}))["createSession"])
            except httpx.TransportError:
                if attempt == REQUEST_ATTEMPTS:
                    raise
                await asyncio.sleep(RETRY_DELAY * attempt)  # back off before the retry
        raise AssertionError("unreachable")

    async def issue_token(self) -> str:
        """Returns a new bearer token (valid 12 h) for this keypair, from ``POST /auth/token``."""
        url = self.base_url + TOKEN_PATH
        response = await self._http.post(url, content=b"", headers=self.signed_headers("POST", url, b""))
        return str(self._document(response)["token"])

    @staticmethod
    def _document(response: httpx.Response) -> dict[str, Any]:
        try:
            document = response.json()
        except ValueError:
            raise BerthAPIError(f"HTTP_{response.status_code}", response.text[:500]) from None
        if response.status_code != 200:
            _raise_first(document.get("errors") or [{"message": response.text[:500]}], f"HTTP_{response.status_code}")
        return document

    def connection_params(self) -> dict[str, str]:
        """Returns the ``connection_init`` payload: the signed headers of ``GET /graphql`` with an empty body."""
        headers = self.signed_headers("GET", self.graphql_url, b"")
        return {name.lower(): value for name, value in headers.items()}

    async def subscribe(self, query: str, variables: dict[str, Any] | None = None) -> AsyncIterator[dict[str, Any]]:
        """Yields the ``data`` of each result of a subscription until the server completes it."""
        ws_url = "ws" + self.graphql_url[len("http"):]
        op_id = str(next(self._ids))
        try:
            async with ws_connect(ws_url, subprotocols=[PROTOCOL], open_timeout=30) as ws:  # type: ignore[list-item]
                await ws.send(json.dumps({"type": "connection_init", "payload": self.connection_params()}))
                await self._wait_for_ack(ws)
                await ws.send(json.dumps({"type": "subscribe", "id": op_id,
                                          "payload": {"query": query, "variables": variables or {}}}))
                async for raw in ws:
                    message = json.loads(raw)
                    kind = message.get("type")
                    if kind == "ping":
                        await ws.send(json.dumps({"type": "pong"}))
                    elif kind == "next" and message.get("id") == op_id:
                        payload = message.get("payload") or {}
                        if payload.get("errors"):
                            _raise_first(payload["errors"])
                        yield payload.get("data") or {}
                    elif kind == "error" and message.get("id") == op_id:
                        _raise_first(message.get("payload") or [])
                    elif kind == "complete" and message.get("id") == op_id:
                        return
        except ConnectionClosed as exc:
            raise self._closed_error(exc) from exc

    @staticmethod
    async def _wait_for_ack(ws: Any) -> None:
        while True:
            message = json.loads(await ws.recv())
            if message.get("type") == "connection_ack":
                return
            if message.get("type") == "ping":
                await ws.send(json.dumps({"type": "pong"}))

    @staticmethod
    def _closed_error(exc: ConnectionClosed) -> BerthAPIError:
        reason = exc.rcvd.reason if exc.rcvd is not None else ""
        code = exc.rcvd.code if exc.rcvd is not None else None
        for refusal in ("RATE_LIMITED", "SUBSCRIPTION_LIMIT"):
            if reason.startswith(f"{refusal}: "):
                return BerthAPIError(refusal, reason.removeprefix(f"{refusal}: "))
        if code == 4403 or reason.startswith("UNAUTHENTICATED"):
            return BerthAPIError("UNAUTHENTICATED", reason.removeprefix("UNAUTHENTICATED: ") or "connection refused")
        return BerthAPIError("CONNECTION_CLOSED", f"websocket closed ({code}): {reason}")
