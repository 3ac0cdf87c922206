"""Sessions addressed by name and by id prefix through the CLI (`session info`, `exec`, `logs`,
`events`, `session rm`), including the ambiguous case, against `berth up` with the process backend."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import RunningBerth

pytestmark = pytest.mark.e2e


@pytest.fixture
def berth(process_berth: RunningBerth) -> RunningBerth:
    """A running Berth whose agent runs kernels as local processes (``process_berth``)."""
    return process_berth


def info(berth: RunningBerth, ref: str) -> dict:
    data = berth.berth_json("session", "info", ref)
    assert isinstance(data, dict)
    return data


def refused(berth: RunningBerth, *args: str) -> str:
    done = berth.berth(*args, check=False)
    assert done.returncode != 0, f"berth {' '.join(args)} was not refused:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def test_sessions_are_addressed_by_name_and_id_prefix(berth: RunningBerth) -> None:
    web = berth.berth("session", "create", "-n", "web").stdout.strip()
    # a second session whose name is a prefix of the first one's id; bigger than the agent, it stays PENDING
    clash = web[:5]
    other = berth.berth("session", "create", "-n", clash, "-r", "cpu=100", "--no-wait").stdout.strip()
    prefix = next(web[:n] for n in range(6, 33) if not other.startswith(web[:n]))

    for ref in ("web", prefix, web):
        assert (info(berth, ref)["id"], info(berth, ref)["name"]) == (web, "web"), ref
    assert info(berth, other[:8])["name"] == clash

    assert berth.berth("exec", "web", "x = 41").stdout == ""
    assert berth.berth("exec", prefix, "print(x + 1)").stdout == "42\n"
    assert berth.berth("exec", "--exec", "web", "echo $BERTH_SESSION_ID").stdout == f"{web}\n"
    assert "listening" in berth.berth("logs", "web").stdout
    assert "listening" in berth.berth("logs", prefix).stdout
    for ref in ("web", prefix):
        events = berth.berth_json("events", ref)
        assert isinstance(events, list) and events, ref
        assert {e["aggregateId"] for e in events} == {web}
        assert events[0]["type"] == "session.requested"
        assert any(e["type"] == "session.execution_finished" for e in events)

    duplicate = refused(berth, "session", "create", "-n", "web", "--no-wait")
    assert "CONFLICT" in duplicate and "'web' is already used by your session" in duplicate and web in duplicate

    # the name of one session is the prefix of another's id: every command refuses, listing both
    for args in (("session", "info", clash), ("exec", clash, "print(1)"), ("logs", clash), ("events", clash),
                 ("session", "rm", clash)):
        said = refused(berth, *args)
        assert f"AMBIGUOUS: session '{clash}' is ambiguous: it matches 2 sessions" in said, said
        assert f"{web}  web  RUNNING" in said and f"{other}  {clash}  PENDING" in said, said
    assert info(berth, "web")["status"] == "RUNNING", "an ambiguous `rm` terminated nothing"

    assert berth.berth("session", "rm", "web").stdout.strip() == web
    assert info(berth, "web")["status"] == "TERMINATED", "an ended session is still found by its name"
    assert "not RUNNING" in refused(berth, "exec", "web", "print(1)")
    assert berth.berth("session", "rm", other[:8]).stdout.strip() == other
    assert info(berth, other)["status"] == "CANCELLED"
    assert "not found" in refused(berth, "session", "info", "nothing-named-so").lower()
