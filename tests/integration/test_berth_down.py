"""``berth down`` (``services.supervisor.down.stop_instance``) with real processes holding, or not holding, a data
directory's lock: it signals only the lock's holder, waits for it to end, and says when it does not."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from services.supervisor.down import stop_instance
from services.supervisor.preflight import LOCK_FILE

_HOLDER = """
import fcntl, os, signal, sys, time
if sys.argv[2] == "deaf":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
lock = open(sys.argv[1], "a+")
fcntl.flock(lock, fcntl.LOCK_EX)
lock.truncate(0)
lock.write(f"{os.getpid()}\\n")
lock.flush()
print("held", flush=True)
time.sleep(120)
"""


def _holding(data_dir: Path, mode: str) -> subprocess.Popen[str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(data_dir / LOCK_FILE), mode], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def test_the_holder_of_the_lock_is_stopped_and_waited_for(tmp_path: Path) -> None:
    holder = _holding(tmp_path, "plain")
    said: list[str] = []
    try:
        assert stop_instance(tmp_path, 30, said.append) == 0
        assert holder.wait(timeout=30) == -signal.SIGTERM
    finally:
        holder.kill()
    assert said == [f"stopping Berth on {tmp_path} (pid {holder.pid}) ...", "Berth stopped"]


def test_a_holder_still_running_after_the_timeout_is_reported_not_killed(tmp_path: Path) -> None:
    holder = _holding(tmp_path, "deaf")
    said: list[str] = []
    try:
        assert stop_instance(tmp_path, 0.5, said.append) == 1
        assert holder.poll() is None
        assert f"Berth (pid {holder.pid}) is still running 0.5 s after the stop request" in said[-1]
        assert f"kill -KILL {holder.pid}" in said[-1]
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_file_signals_nobody(tmp_path: Path) -> None:
    """The lock file names a live process that does not hold the lock (the file outlives its Berth): not running."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (tmp_path / LOCK_FILE).write_text(f"{bystander.pid}\n")
        said: list[str] = []
        assert stop_instance(tmp_path, 5, said.append) == 0
        assert said == [f"Berth is not running on {tmp_path}"]
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_a_data_dir_berth_never_ran_on_is_not_running(tmp_path: Path) -> None:
    said: list[str] = []
    assert stop_instance(tmp_path / "never", 5, said.append) == 0
    assert said == [f"Berth is not running on {tmp_path / 'never'}"]
