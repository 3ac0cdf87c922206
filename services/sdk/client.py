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
import json
import uuid
from collections.abc import AsyncGenerator
from typing import Any

import httpx

from services.sdk.errors import BerthAPIError, raise_first
from services.sdk.signing import sign_request
from services.sdk.subscriptions import SubscriptionChannel

__all__ = ["BerthAPIError", "BerthClient"]

CREATE_SESSION = "mutation($input: CreateSessionInput!) { createSession(input: $input) { sessionId position } }"
REQUEST_ATTEMPTS = 3
"""Times ``create_session`` sends a request whose answer was lost (connection reset, timeout)."""
RETRY_DELAY = 0.5
"""Seconds before its first retry (then twice that)."""
RETRIED_CODES = frozenset({"UNAVAILABLE", "HTTP_502", "HTTP_503", "HTTP_504"})
"""Answers after which ``create_session`` and ``execute_while_unavailable`` send a request again: nothing was recorded."""
UNAVAILABLE_WINDOW = 60.0
"""Seconds ``create_session`` and ``execute_while_unavailable`` keep retrying while the gateway answers UNAVAILABLE (an outage of
PostgreSQL or NATS, a gateway restarting)."""
GRAPHQL_PATH = "/graphql"
TOKEN_PATH = "/auth/token"


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
        self._answered = False
        """Whether the gateway has answered this client once: a refused connection after that is a gateway
        restarting (``execute_while_unavailable`` waits for it), before it most likely none running."""
        self._channel = SubscriptionChannel("ws" + self.graphql_url[len("http"):], self.connection_params)

    async def __aenter__(self) -> BerthClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Closes the HTTP connections and the websocket."""
        await self._channel.close()
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
        self._answered = True
        document = self._document(response)
        if document.get("errors"):
            raise_first(document["errors"])
        return document.get("data") or {}

    async def create_session(self, input: dict[str, Any]) -> dict[str, Any]:
        """Requests a session (a ``CreateSessionInput``); returns ``{sessionId, position}``.

        The request carries an ``idempotencyKey`` (``input``'s, else a fresh random one) and is sent
        again, with that key and signed afresh, when its answer is lost (up to ``REQUEST_ATTEMPTS``
        times) or is UNAVAILABLE (for up to ``UNAVAILABLE_WINDOW`` seconds): however often it reaches
        the gateway, it creates one session."""
        input = {**input, "idempotencyKey": input.get("idempotencyKey") or uuid.uuid4().hex}
        lost = 0
        deadline = asyncio.get_running_loop().time() + UNAVAILABLE_WINDOW
        while True:
            try:
                return dict((await self.execute_while_unavailable(CREATE_SESSION, {"input": input},
                                                                  deadline=deadline))["createSession"])
            except httpx.TransportError:
                lost += 1
                if lost == REQUEST_ATTEMPTS:
                    raise
                await asyncio.sleep(RETRY_DELAY * lost)  # back off before the retry

    async def execute_while_unavailable(self, query: str, variables: dict[str, Any] | None = None, *,
                                        deadline: float | None = None) -> dict[str, Any]:
        """Runs ``execute``, sent again while the gateway answers UNAVAILABLE (its PostgreSQL or NATS
        away: the request recorded nothing), or refuses the connection once it has answered this client (a
        gateway restarting, killed or upgraded: the request never reached it), until ``deadline`` (the event
        loop's clock; default ``UNAVAILABLE_WINDOW`` seconds from now). For a request that may be sent twice
        when it recorded nothing the first time (``terminateSession``, any query); other errors raise, and
        so does a refused connection to a gateway that never answered (none running: said at once)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + UNAVAILABLE_WINDOW if deadline is None else deadline
        while True:
            try:
                return await self.execute(query, variables)
            except BerthAPIError as exc:
                if exc.code not in RETRIED_CODES or loop.time() >= deadline:
                    raise
            except httpx.ConnectError:
                if not self._answered or loop.time() >= deadline:
                    raise
            await asyncio.sleep(RETRY_DELAY)  # the gateway, its store or its bus is away: nothing was recorded

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
            raise_first(document.get("errors") or [{"message": response.text[:500]}], f"HTTP_{response.status_code}")
        return document

    def connection_params(self) -> dict[str, str]:
        """Returns the ``connection_init`` payload: the signed headers of ``GET /graphql`` with an empty body."""
        headers = self.signed_headers("GET", self.graphql_url, b"")
        return {name.lower(): value for name, value in headers.items()}

    @property
    def websocket_connects(self) -> int:
        """How many times this client opened its websocket (one while it stays up)."""
        return self._channel.connects

    def subscribe(self, query: str, variables: dict[str, Any] | None = None) -> AsyncGenerator[dict[str, Any], None]:
        """Yields the ``data`` of each result of a subscription until the server completes it; every
        subscription of this client runs on one warm websocket (``subscriptions.SubscriptionChannel``)."""
        return self._channel.subscribe(query, variables)
