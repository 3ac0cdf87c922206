"""A backend that runs each kernel's runner as a plain local process: no container, NO isolation.

For machines without a container engine (and for tests). Each kernel gets
``<data_dir>/kernels/<kernel_id>/`` with ``io/runner.sock`` (the runner's socket),
``work/`` (its working directory and HOME), ``runner.log`` (its stdout and stderr) and
``runner.pid``, kept for ``BERTH_KERNEL_RETENTION`` after the kernel ended (``leftovers.py``). The image and the slot limits are ignored: code runs as the agent's user
with the agent's privileges. A session's folders appear as symbolic links at their targets
under ``work/`` (``/home/work/x`` → ``work/x``); ``ro`` is NOT enforced (nothing is, here). Each runner gets SIGTERM when the agent's process dies, even by
SIGKILL (parent-death signal, ``services.common.lifetime``), and then kills what it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from contracts.agent import KernelAssigned
from contracts.status import Reason
from contracts.subjects import check_token
from services.agent.backends.private import private_dirs
from contracts.mounts import MOUNT_ROOT as CONTAINER_HOME
from services.agent.backends.folder_mounts import FolderBind, folder_binds
from services.agent.backends.dir_changes import DirectoryChanges, DirectoryWatcher
from services.agent.backends.leftovers import DEFAULT_KEEP, Leftovers
from services.agent.backends.log_tail import LOG_LIMIT, file_tail
from services.agent.backends.base import ExitHandler, KernelBackend, KernelLaunch, KernelStartError, ProgressHandler
from services.common.lifetime import die_with_parent

__all__ = ["RUNNER_SCRIPT", "ProcessBackend"]

log = logging.getLogger(__name__)

RUNNER_SCRIPT = Path(__file__).resolve().parents[1] / "runner" / "berth_runner.py"
START_TIMEOUT = 15.0
LOOK_EVERY = 0.02
"""Seconds between two looks for the runner's socket where its directory cannot be watched (``dir_changes.py``)."""
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")


def _link_folders(work: Path, binds: list[FolderBind]) -> None:
    """Links each folder at its target under ``work`` (which stands for ``/home/work``)."""
    for bind in binds:
        link = work / PurePosixPath(bind.target).relative_to(CONTAINER_HOME)
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() and os.readlink(link) == str(bind.source):
            continue  # a redelivered assignment
        link.symlink_to(bind.source, target_is_directory=True)
        if bind.read_only:
            log.warning("process backend: folder %s is linked at %s WITHOUT read-only protection", bind.source, link)


def _exit_code(returncode: int) -> int:
    """Returns a shell-style exit code: 128 + n for a process killed by signal n."""
    return 128 - returncode if returncode < 0 else returncode


class ProcessBackend(KernelBackend):
    """Runs ``berth_runner.py`` as a subprocess per kernel, in its own process group."""

    name = "process"

    def __init__(self, data_dir: Path, *, python: str = sys.executable, grace: float = 5.0,
                 volumes: Mapping[str, Path] | None = None, retention: float = DEFAULT_KEEP) -> None:
        """``retention`` (``BERTH_KERNEL_RETENTION``): seconds an ended kernel's directory is kept (``leftovers.py``)."""
        self.root = Path(data_dir) / "kernels"
        self.volumes = dict(volumes or {})
        self.python = python
        self.grace = grace
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._stopping: set[str] = set()
        self._exits: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        self._waiters: set[asyncio.Task[None]] = set()
        self._dirs = DirectoryWatcher()
        """Watches a starting kernel's ``io/`` for its runner's socket (``dir_changes.py``)."""
        self._leftovers = Leftovers(self.root, retention)
        log.warning(
            "PROCESS BACKEND: kernels run as plain local processes of this user, WITHOUT ANY ISOLATION "
            "(no container, no resource limits, images ignored). Use it only on a trusted machine."
        )

    def kernel_dir(self, kernel_id: str) -> Path:
        """Returns the kernel's directory (io/, work/, runner.log, runner.pid); ``SubjectError`` (a
        ValueError) when the id is not a plain token (``../x`` must never name a path outside it)."""
        return self.root / check_token(kernel_id, "kernel id")

    def runner_socket(self, kernel_id: str) -> Path | None:
        """Returns the runner's socket path while the kernel runs here, else None."""
        proc = self._procs.get(kernel_id)
        if proc is None or proc.returncode is not None:
            return None
        return self.kernel_dir(kernel_id) / "io" / "runner.sock"

    async def prepare(self, kernel: KernelAssigned, progress: ProgressHandler | None = None) -> None:
        """Needs nothing: the image is ignored."""
        log.info("process backend: ignoring image %s of kernel %s", kernel.image, kernel.kernel_id)

    async def create(self, launch: KernelLaunch) -> str:
        """Starts the kernel's runner and waits until it listens; returns ``proc-<pid>``."""
        kernel_id = launch.kernel.kernel_id
        running = self._procs.get(kernel_id)
        if running is not None and running.returncode is None:
            return f"proc-{running.pid}"
        home = self.kernel_dir(kernel_id)
        private_dirs(home, home / "io", home / "work")
        self._leftovers.began(kernel_id)
        _link_folders(home / "work", folder_binds(launch.kernel.mounts, self.volumes))
        sock = home / "io" / "runner.sock"
        sock.unlink(missing_ok=True)
        env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        env.update({"HOME": str(home / "work"), **launch.env})
        with self._dirs.watch(sock.parent, fallback=LOOK_EVERY) as changes:  # before the runner can listen
            with open(home / "runner.log", "ab") as out:
                proc = await asyncio.create_subprocess_exec(
                    self.python, str(RUNNER_SCRIPT), "--socket", str(sock), cwd=home / "work", env=env,
                    stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True, preexec_fn=die_with_parent(signal.SIGTERM),
                )
            (home / "runner.pid").write_text(f"{proc.pid}\n")
            await self._until_listening(kernel_id, proc, sock, changes)
        self._procs[kernel_id] = proc
        self._stopping.discard(kernel_id)
        waiter = asyncio.create_task(self._wait_exit(kernel_id, proc), name=f"process-wait-{kernel_id}")
        self._waiters.add(waiter)
        waiter.add_done_callback(self._waiters.discard)
        log.info("kernel %s: runner process %d started", kernel_id, proc.pid)
        return f"proc-{proc.pid}"

    async def _until_listening(self, kernel_id: str, proc: asyncio.subprocess.Process, sock: Path,
                               changes: DirectoryChanges) -> None:
        """Waits until the runner's socket appears, woken by ``changes`` in its directory or by the runner's exit."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        exited = asyncio.ensure_future(proc.wait())
        try:
            while not sock.exists():
                if proc.returncode is not None:
                    raise KernelStartError(
                        f"the runner of kernel {kernel_id} exited with {proc.returncode}: {self._tail(kernel_id)}")
                if loop.time() > deadline:
                    await self._kill(proc)
                    raise KernelStartError(f"the runner of kernel {kernel_id} did not listen within {START_TIMEOUT:.0f}s")
                changed = asyncio.ensure_future(changes.wait(deadline - loop.time()))
                await asyncio.wait({exited, changed}, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
        finally:
            exited.cancel()

    async def _wait_exit(self, kernel_id: str, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        if kernel_id not in self._stopping and self._procs.get(kernel_id) is proc:
            await self._exits.put((kernel_id, _exit_code(code)))

    async def destroy(self, kernel_id: str) -> int | None:
        """Sends SIGTERM to the runner's process group, SIGKILL after the grace period; returns
        its exit code, None when the kernel never ran here."""
        proc = self._procs.get(kernel_id)
        if proc is None:
            return None
        self._stopping.add(kernel_id)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(self.grace):
                    await proc.wait()
            except asyncio.TimeoutError:
                await self._kill(proc)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever the runner left in its group
        self._procs.pop(kernel_id, None)
        (self.kernel_dir(kernel_id) / "runner.pid").unlink(missing_ok=True)
        assert proc.returncode is not None
        return _exit_code(proc.returncode)

    async def _kill(self, proc: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()

    async def list_running(self) -> dict[str, str]:
        """Returns the kernels whose runner is alive."""
        return {k: f"proc-{p.pid}" for k, p in self._procs.items() if p.returncode is None}

    async def watch(self, on_exit: ExitHandler) -> None:
        """Reports each runner that exits by itself: ``self-terminated`` with its exit code."""
        while True:
            kernel_id, code = await self._exits.get()
            self._procs.pop(kernel_id, None)
            log.warning("kernel %s: runner exited by itself with %d", kernel_id, code)
            await on_exit(kernel_id, code, Reason.SELF_TERMINATED.value)

    async def logs(self, kernel_id: str, tail: int | None = None, limit: int = LOG_LIMIT) -> str:
        """Returns the end of the runner's log: its last ``tail`` lines within its last ``limit`` bytes (at most a
        MiB), empty when there is none."""
        return await asyncio.to_thread(file_tail, self._log_path(kernel_id), tail, min(limit, LOG_LIMIT))

    def _log_path(self, kernel_id: str) -> Path:
        return self.kernel_dir(kernel_id) / "runner.log"

    def _tail(self, kernel_id: str) -> str:
        return file_tail(self._log_path(kernel_id), None, 2000).strip()[-2000:]

    async def sweep(self) -> list[str]:
        """Removes the directories (log, working directory) of the kernels ended longer than the retention ago."""
        return await self._leftovers.sweep(self._in_use)

    async def _in_use(self, kernel_id: str) -> bool:
        proc = self._procs.get(kernel_id)
        return proc is not None and proc.returncode is None

    async def close(self) -> None:
        """Stops watching; the runners keep running (as containers would) while this process lives."""
        self._dirs.close()
        for waiter in list(self._waiters):
            waiter.cancel()
        await asyncio.gather(*self._waiters, return_exceptions=True)
