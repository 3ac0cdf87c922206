"""``berth ps`` / ``berth session ls`` and ``berth events`` as subprocesses against a real gateway, its read
models kept current by a stand-in projector: the live sessions asked of the gateway (never every ended one
paged through), with ``--all`` the newest LIMIT, oldest first; the last N events, asked newest first."""

from __future__ import annotations

import json

from services.cli.session_cmd import LIVE, listed_statuses
from tests.support.cli import as_json, berth
from tests.support.gateway import (  # noqa: F401 - fixtures
    Keys, clean_streams, keys, read_models, served,
)
from tests.support.tenancy import projecting  # noqa: F401 - fixture
from tests.support.waiting import async_wait_for


def test_without_all_only_the_live_statuses_are_asked_for() -> None:
    assert listed_statuses((), False) == LIVE
    assert {"PENDING", "RUNNING"} <= set(LIVE) and not {"TERMINATED", "CANCELLED", "ERROR"} & set(LIVE)
    assert listed_statuses((), True) is None
    assert listed_statuses(("running",), False) == ["RUNNING"]


async def test_ps_lists_the_live_sessions_and_with_all_the_newest(served: str, keys: Keys, projecting: None) -> None:
    alice = keys.alice
    ids = [(await as_json(served, alice, "session", "create", "--no-wait"))["id"] for _ in range(4)]
    assert await as_json(served, alice, "session", "rm", "--no-wait", ids[0], ids[1]) == ids[:2]  # were plain ids

    async def listed(*args: str) -> list[str]:
        return [row["id"] for row in await as_json(served, alice, "ps", *args)]

    async def cancelled() -> bool:
        return await listed() == ids[2:]

    await async_wait_for(cancelled, timeout=30, message="the cancelled sessions still listed as live")
    assert await listed("--all", "--limit", "3") == ids[1:], "the newest three, oldest first"
    assert await listed("--all", "--limit", "2") == ids[2:]
    assert await listed("--all") == ids
    assert await listed("--limit", "1") == ids[3:]
    assert await listed("-s", "cancelled") == ids[:2]
    code, _, err = await berth(served, alice, "ps", "--limit", "0", ok=False)
    assert code == 2 and "--limit" in err


async def test_events_shows_the_last_n_oldest_first_and_all_with_zero(served: str, keys: Keys, projecting: None) -> None:
    ids = [(await as_json(served, keys.alice, "session", "create", "--no-wait"))["id"] for _ in range(3)]

    async def logged() -> list[dict]:
        rows = await as_json(served, keys.admin, "events", "-n", "0")
        return rows if {row["aggregateId"] for row in rows} >= set(ids) else []

    every = await async_wait_for(logged, timeout=30, message="the sessions' events never reached the log")
    positions = [row["position"] for row in every]
    assert positions == sorted(positions) and len(positions) >= 3
    _, text, err = await berth(served, keys.admin, "-o", "json", "events", "-n", "2")
    assert [row["position"] for row in json.loads(text)] == positions[-2:]
    assert "the last 2 events" in err
    last_of_first = await as_json(served, keys.alice, "events", ids[0], "-n", "1")
    assert [row["aggregateId"] for row in last_of_first] == [ids[0]]
    # a misspelt session name is an error, not "no events" and status 0
    code, _, err = await berth(served, keys.alice, "events", "no-such-session", ok=False)
    assert code == 1 and "no session, agent or keypair 'no-such-session'" in err, err
