"""A request that cannot pass authentication is refused before its body is read
(``services.gateway.auth.verify.Authenticator.screen``): before, the gateway read up to 1 MiB of anyone's body (and
waited up to 10 s for it) on each connection before it looked at the credentials, so that anonymous connections
could hold the gateway's memory. A signed request's form, date, Host and access key, and a bearer token, are
checked first; only the signature, which covers the body, waits for it."""

from __future__ import annotations

import asyncio
import datetime as dt
from urllib.parse import urlsplit

import pytest

from services.sdk.client import BerthClient
from tests.support.gateway import Keys, clean_streams, keys, read_models, served  # noqa: F401 - fixtures

pytestmark = pytest.mark.asyncio

DECLARED = 1_000_000
"""The body length each request declares and never sends."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


async def _status_without_the_body(base_url: str, headers: dict[str, str]) -> bytes:
    """Sends a POST's head declaring a body of ``DECLARED`` bytes, sends none of it, and returns the status line
    answered (empty when the connection closed without an answer)."""
    url = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    head = {"host": url.netloc, "content-type": "application/json", "content-length": str(DECLARED), **headers}
    writer.write(b"POST /graphql HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()).encode() + b"\r\n")
    await writer.drain()
    try:
        async with asyncio.timeout(30):
            return await reader.readline()
    finally:
        writer.close()


@pytest.mark.parametrize("headers", [
    {},
    {"authorization": "BackendAI signMethod=HMAC-SHA256, credential=AKNOSUCHKEY0000000:00ff", "x-backendai-date": ""},
    {"authorization": "Bearer no-such-token"},
    {"authorization": "BackendAI nonsense"},
], ids=["no credentials", "unknown access key", "unknown token", "malformed"])
async def test_a_request_that_cannot_pass_is_refused_before_its_body(served: str, headers: dict[str, str]) -> None:
    if "x-backendai-date" in headers:
        headers = {**headers, "x-backendai-date": _now()}
    assert (await _status_without_the_body(served, headers)).startswith(b"HTTP/1.1 401 ")


async def test_a_known_access_key_with_a_stale_date_is_refused_before_its_body(served: str, keys: Keys) -> None:
    stale = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    headers = {"authorization": f"BackendAI signMethod=HMAC-SHA256, credential={keys.alice[0]}:00ff",
               "x-backendai-date": stale}
    assert (await _status_without_the_body(served, headers)).startswith(b"HTTP/1.1 401 ")


async def test_signed_requests_and_tokens_still_pass_and_a_wrong_signature_still_fails(served: str,
                                                                                      keys: Keys) -> None:
    async with BerthClient(served, *keys.alice) as alice:
        assert await alice.execute("{ __typename }") == {"__typename": "Query"}
    async with BerthClient(served, keys.alice[0], "not-the-secret") as forger:
        with pytest.raises(Exception, match="authentication failed"):
            await forger.execute("{ __typename }")
