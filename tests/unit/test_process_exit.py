"""A service's process ends once its main coroutine has ended, whatever was left running, and says what held it
(``services.common.process_exit``): before, a leftover held the process until its supervisor killed it, and the
log said nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_SERVICE = """
import asyncio, sys, threading
from services.common.entrypoint import run_until_signalled

def blocked_for_ever():
    threading.Event().wait()

async def deaf_to_cancellation():
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass

async def run(settings, stop):
    if sys.argv[1] == "thread":
        threading.Thread(target=blocked_for_ever, name="blocked").start()
    elif sys.argv[1] == "task":
        asyncio.get_running_loop().create_task(deaf_to_cancellation(), name="deaf")
    await asyncio.sleep(0)

run_until_signalled("probe", run, needs=(), health=False)
"""


def _run(leftover: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _SERVICE, leftover], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin"})


def test_a_service_with_nothing_left_ends_at_once_and_cleanly() -> None:
    done = _run("nothing")
    assert done.returncode == 0, done.stderr
    assert "probe stopped" in done.stderr
    assert "ERROR" not in done.stderr


def test_a_thread_left_in_a_blocking_call_is_shown_and_does_not_hold_the_process() -> None:
    done = _run("thread")
    assert done.returncode == 1
    assert "the process did not end within 5 s of its main coroutine; not waiting for its threads:" in done.stderr
    assert "blocked: " in done.stderr and "blocked_for_ever" in done.stderr  # the held thread, where it is


def test_a_task_that_outlives_its_cancellation_is_named_with_its_stack_and_does_not_hold_the_process() -> None:
    done = _run("task")
    assert done.returncode == 1
    assert "task deaf did not end within 2 s of its cancellation" in done.stderr
    assert "deaf_to_cancellation" in done.stderr
