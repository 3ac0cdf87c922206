"""An interrupt of a run that has not started yet (a query run waiting for the one before it) is kept: the run never
starts. Found by trying Berth as a hostile tenant: the runner answered such an interrupt ``ok: false`` and forgot it,
so `berth exec` of a `while True` loop, Ctrl-C'd (or its client killed: the gateway's interrupt on the stream's end)
while an earlier run held the namespace, started once that run ended and held the namespace for good; every later
`berth exec` in the session waited behind it."""

from __future__ import annotations

from pathlib import Path

from tests.unit.test_runner import RunnerClient, runner, text  # noqa: F401 - fixture

GATE = "import os, time\nprint('busy', flush=True)\nwhile not os.path.exists({path!r}):\n    time.sleep(0.02)\n"


def test_a_query_run_interrupted_while_it_waits_never_runs(runner: RunnerClient, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    runner.send({"op": "run", "run_id": "first", "mode": "query", "code": GATE.format(path=str(gate))})
    assert runner.receive()["data"].startswith("busy")
    waiting = RunnerClient(runner.path)
    try:
        waiting.send({"op": "run", "run_id": "queued", "mode": "query", "code": "print('queued ran')"})
        waiting.send({"op": "interrupt", "run_id": "queued"})  # handled in order on one connection: after the run
        assert waiting.receive() == {"op": "interrupted", "run_id": "queued", "ok": True}
        gate.touch()
        while (first := runner.receive()).get("kind") != "done":
            pass  # the rest of 'busy\n'
        assert first["exit_code"] == 0, first
        messages = []
        while (message := waiting.receive()).get("kind") != "done":
            messages.append(message)
    finally:
        waiting.close()
    assert message["exit_code"] == 130
    assert text(messages, "stdout") == "", "the interrupted run ran"
    assert "interrupted before it started" in text(messages, "stderr")
    chunks, done = runner.run("print('next')", run_id="next")
    assert (text(chunks, "stdout"), done["exit_code"]) == ("next\n", 0), "the namespace takes the next run"
