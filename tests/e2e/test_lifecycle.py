"""The issue's first must-show, end to end through `berth up`, the CLI and GraphQL.

`berth session create` → RUNNING on the simulated agent → seen in a GraphQL query and
in the subscription → `berth session rm` → TERMINATED; `berth events` shows the history.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest

from services.sdk.client import BerthClient
from tests.e2e.conftest import RunningBerth, berth_env

pytestmark = pytest.mark.e2e

FULL_HISTORY = [
    "session.requested",
    "session.scheduled",
    "session.kernel_preparing",
    "session.status_changed",  # PREPARING
    "session.kernel_creating",
    "session.status_changed",  # CREATING
    "session.kernel_started",
    "session.status_changed",  # RUNNING
    "session.status_changed",  # TERMINATING
    "session.kernel_terminated",
    "session.status_changed",  # TERMINATED
]


def _client(berth: RunningBerth) -> BerthClient:
    inst = berth.instance()
    return BerthClient(str(inst["gateway_url"]), str(inst["access_key"]), str(inst["secret_key"]))


async def _subscription_events(client: BerthClient, session_id: str, count: int) -> list[dict]:
    query = "subscription($id: String!) { sessionEvents(sessionId: $id, fromPosition: 0) { position type payload } }"
    seen: list[dict] = []
    stream = client.subscribe(query, {"id": session_id})
    try:
        async with asyncio.timeout(20):
            async for item in stream:
                seen.append(item["sessionEvents"])
                if len(seen) >= count:
                    break
    finally:
        await stream.aclose()
    return seen


def test_session_lifecycle_through_cli_graphql_and_subscription(berth_up: RunningBerth) -> None:
    created = berth_up.berth_json("session", "create")
    session_id = created["id"]
    assert created["status"] == "RUNNING"
    assert created["agentIds"] == ["local"]

    client = _client(berth_up)
    result = asyncio.run(client.execute("query($id: String!) { session(id: $id) { id status kernels { status agentId } } }", {"id": session_id}))
    assert result["session"]["status"] == "RUNNING"
    assert result["session"]["kernels"][0]["status"] == "RUNNING"

    live = asyncio.run(_subscription_events(client, session_id, 8))
    assert [e["type"] for e in live] == FULL_HISTORY[:8]
    assert [e["position"] for e in live] == sorted(e["position"] for e in live)

    berth_up.berth("session", "rm", session_id)
    info = berth_up.berth_json("session", "info", session_id)
    assert info["status"] == "TERMINATED"
    assert info["statusReason"] == "user-requested"
    assert info["kernels"][0]["status"] == "TERMINATED"

    history = berth_up.berth_json("events", session_id)
    assert [e["type"] for e in history] == FULL_HISTORY
    statuses = [json.loads(e["payload"]).get("status") for e in history if e["type"] == "session.status_changed"]
    assert statuses == ["PREPARING", "CREATING", "RUNNING", "TERMINATING", "TERMINATED"]

    agents = berth_up.berth_json("agents", "ls")
    assert [(a["id"], a["status"], a["kernelCount"]) for a in agents] == [("local", "ALIVE", 0)]

    # resuming the subscription after the 4th event repeats nothing
    resumed_from = live[3]["position"]
    query = "subscription($id: String!, $p: Int) { sessionEvents(sessionId: $id, fromPosition: $p) { position type } }"

    async def resume() -> list[dict]:
        out: list[dict] = []
        stream = client.subscribe(query, {"id": session_id, "p": resumed_from})
        try:
            async with asyncio.timeout(20):
                async for item in stream:
                    out.append(item["sessionEvents"])
                    if len(out) == len(FULL_HISTORY) - 4:
                        break
        finally:
            await stream.aclose()
        return out

    rest = asyncio.run(resume())
    assert [e["type"] for e in rest] == FULL_HISTORY[4:]
    assert all(e["position"] > resumed_from for e in rest)


def test_bad_input_is_refused_with_a_clear_error_and_writes_nothing(berth_up: RunningBerth) -> None:
    before = berth_up.berth_json("events")
    for args, message in [
        (("-r", "cpu=-1"), "cpu"),
        (("-r", "gpu=1"), "unknown resource slot"),
        (("-r", "mem=lots"), "cannot parse"),
    ]:
        done = berth_up.berth("session", "create", *args, check=False)
        assert done.returncode != 0
        assert message in done.stderr, done.stderr
    missing = berth_up.berth("session", "rm", "no-such-session", check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr.lower()
    assert berth_up.berth_json("events") == before


def test_up_restarts_on_the_same_data_dir_and_resumes(tmp_path: Path, pg_dsn: str) -> None:
    berth = RunningBerth(tmp_path / "b", berth_env(tmp_path / "b", BERTH_PG_DSN=pg_dsn))
    berth.start()
    first_log = berth.log_text()
    assert "secret key:" in first_log  # the admin keypair is printed on first start only
    session_id = berth.berth_json("session", "create")["id"]
    assert berth.stop(signal.SIGINT) == 0
    assert not (berth.data_dir / "instance.json").exists()
    # the stop says what it leaves: the session is not ended, and the next start resumes it
    assert "1 session not ended (1 RUNNING): the next `berth up` resumes it" in berth.log_text()

    berth.start()
    assert berth.log_text()[len(first_log):].count("secret key:") == 0
    assert berth.berth_json("session", "info", session_id)["status"] == "RUNNING"
    second = berth.berth_json("session", "create")["id"]
    sessions = {s["id"] for s in berth.berth_json("session", "ls")}
    assert {session_id, second} <= sessions
    assert berth.stop(signal.SIGTERM) == 0

    # a data dir that lost its CLI keypair (the database keeps the admin) gets a new one, not an error
    (berth.data_dir / "admin.keypair").unlink()
    berth.start()
    assert "for the local CLI" in berth.log_text()
    assert berth.berth_json("session", "info", second)["status"] == "RUNNING"

    # `berth down` from another terminal stops it as Ctrl-C would; then there is nothing to stop
    assert "Berth stopped" in berth.berth("down").stderr
    assert berth.proc is not None and berth.proc.wait(timeout=30) == 0  # it ends as it lets the lock go
    assert "2 sessions not ended (2 RUNNING)" in berth.log_text()  # its own stop, said as at a Ctrl-C
    assert "Berth is not running on" in berth.berth("down").stderr


@pytest.mark.slow
def test_up_on_the_embedded_default_needs_no_settings(tmp_path: Path) -> None:
    """`berth up` with no BERTH_* addresses: NATS from the wheel and embedded PostgreSQL."""
    berth = RunningBerth(tmp_path / "embedded", berth_env(tmp_path / "embedded"))
    berth.start()
    try:
        inst = berth.instance()
        assert str(inst["nats_url"]).startswith("nats://127.0.0.1:")
        assert "host=" in str(inst["pg_dsn"])  # the embedded server listens on a Unix socket only
        session_id = berth.berth_json("session", "create")["id"]
        assert berth.berth_json("session", "info", session_id)["status"] == "RUNNING"
    finally:
        assert berth.stop() == 0
