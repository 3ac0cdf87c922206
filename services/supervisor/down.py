"""``berth down``: stops the ``berth up`` that runs on a data directory, from another terminal or a script.

The running supervisor is the process that holds the data directory's lock (``preflight.holding_data_dir``), whose
PID the lock file holds. ``stop_instance`` sends it SIGTERM, the stop Ctrl-C asks for (every service stopped in
order, NATS and PostgreSQL last), and waits until the lock is free: the supervisor has ended, however it ended.
Nothing holds the lock: Berth is not running there, which is no error (as ``docker compose down``). A PID is only
signalled while its process holds the lock, so a stale file never makes it signal another process.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import time
from pathlib import Path
from typing import Callable, Iterator

from services.supervisor.preflight import LOCK_FILE

__all__ = ["POLL", "stop_instance"]

POLL = 0.1
"""Seconds between two looks at the lock while waiting for the supervisor to end."""


@contextlib.contextmanager
def _lock_file(data_dir: Path) -> Iterator[int | None]:
    """Yields the lock file's descriptor, None when there is no lock file (Berth never ran there)."""
    try:
        fd = os.open(data_dir / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)


def _free(fd: int) -> bool:
    """Returns True when no process holds the lock (it is taken and released at once)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    fcntl.flock(fd, fcntl.LOCK_UN)
    return True


def _holder(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def stop_instance(data_dir: Path, timeout: float, say: Callable[[str], None],
                  clock: Callable[[], float] = time.monotonic) -> int:
    """Stops the ``berth up`` running on ``data_dir`` and waits up to ``timeout`` seconds for it to end. Returns
    the exit status for ``berth down``: 0 stopped (or not running), 1 still running after ``timeout`` or not
    signalled (``say`` tells why, and what to do)."""
    with _lock_file(data_dir) as fd:
        if fd is None or _free(fd):
            say(f"Berth is not running on {data_dir}")
            return 0
        pid = _holder(fd)
        if pid is None:
            say(f"Berth runs on {data_dir}, but its lock file names no process; stop it with Ctrl-C in its terminal")
            return 1
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError as exc:
            if exc.errno != errno.ESRCH:  # ESRCH: it ended meanwhile (the wait below sees the lock free)
                say(f"cannot signal Berth's process {pid} on {data_dir}: {exc.strerror}")
                return 1
        say(f"stopping Berth on {data_dir} (pid {pid}) ...")
        deadline = clock() + timeout
        while not _free(fd):
            if clock() >= deadline:
                say(f"Berth (pid {pid}) is still running {timeout:g} s after the stop request; its log says what "
                    f"it waits for (kill -KILL {pid} ends it at once, its services with it)")
                return 1
            time.sleep(POLL)
        say("Berth stopped")
        return 0
