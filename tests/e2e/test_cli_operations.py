"""`berth events --follow` and `berth projections rebuild` against a running instance."""

from __future__ import annotations

import json
import subprocess
import threading

import psycopg
import pytest

from projections.rebuild import dump_read_models
from tests.e2e.conftest import BERTH, RunningBerth
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def test_events_follow_prints_new_events_as_they_happen(berth_up: RunningBerth) -> None:
    follower = subprocess.Popen([*BERTH, "-o", "json", "events", "--follow", "--poll", "0.1"], env=berth_up.env,
                                stdout=subprocess.PIPE, text=True)
    lines: list[dict] = []
    reader = threading.Thread(target=lambda: lines.extend(json.loads(line) for line in follower.stdout), daemon=True)
    reader.start()
    try:
        session_id = berth_up.berth_json("session", "create")["id"]
        wait_for(lambda: any(e["type"] == "session.status_changed" and e["aggregateId"] == session_id
                             and json.loads(e["payload"])["status"] == "RUNNING" for e in list(lines)),
                 timeout=30, message="the follower did not print the session reaching RUNNING")
    finally:
        follower.terminate()
        follower.wait(timeout=10)
    positions = [e["position"] for e in lines]
    assert positions == sorted(set(positions)), "followed events must be in order and never repeated"


def test_rebuild_on_a_running_instance_gives_identical_read_models(berth_up: RunningBerth) -> None:
    ids = [berth_up.berth_json("session", "create")["id"] for _ in range(3)]
    berth_up.berth("session", "rm", ids[0])
    berth_up.berth("session", "create", "-r", "cpu=100", "--no-wait")  # stays PENDING: bigger than the agent
    dsn = str(berth_up.instance()["pg_dsn"])
    with psycopg.connect(dsn) as conn:
        before = dump_read_models(conn)
    done = berth_up.berth("projections", "rebuild")
    assert "done: read models at event position" in done.stderr and " events in " in done.stderr
    with psycopg.connect(dsn) as conn:
        after = dump_read_models(conn)
    assert after == before
    assert len(after["sessions"]) == 4
