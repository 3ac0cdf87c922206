"""How large an ``execute`` may be, on a real gateway (uvicorn's websocket limit included): code and stdin
up to the limit reach the resolver even when JSON escaping doubles them, which refuses more with a
clear BAD_INPUT; a message past the websocket's limit is MESSAGE_TOO_BIG, said by the SDK, not a bare
close code."""

from __future__ import annotations

import pytest

from contracts.execution import MAX_EXEC_INPUT
from services.cli import queries as q
from services.sdk.client import BerthAPIError, BerthClient
from tests.support.gateway import (  # noqa: F401 - fixtures
    Keys, clean_streams, keys, read_models, served,
)
from tests.support.tenancy import projecting  # noqa: F401 - fixture


async def first_error(client: BerthClient, code: str) -> BerthAPIError:
    with pytest.raises(BerthAPIError) as refused:
        async for _ in client.subscribe(q.EXECUTE, {"id": "no-such-session", "code": code, "mode": "query"}):
            pass
    return refused.value


async def test_inputs_up_to_the_limit_reach_the_resolver_and_larger_ones_are_named(served: str, keys: Keys,
                                                                                  projecting: None) -> None:
    async with BerthClient(served, *keys.alice) as alice:
        escaped = await first_error(alice, "\n" * (MAX_EXEC_INPUT - 10))  # 2 MiB once JSON-escaped
        assert escaped.code == "NOT_FOUND", escaped  # within the limit: the session is what is missing
        over = await first_error(alice, "x" * (MAX_EXEC_INPUT + 1))
        assert (over.code, "must not exceed" in over.message) == ("BAD_INPUT", True), over
    async with BerthClient(served, *keys.alice) as alice:
        huge = await first_error(alice, "x" * (3 * MAX_EXEC_INPUT))
        assert huge.code == "MESSAGE_TOO_BIG" and "through a folder" in huge.message, huge
