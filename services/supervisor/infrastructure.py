"""Starts the embedded NATS and PostgreSQL, or uses ``BERTH_NATS_URL`` / ``BERTH_PG_DSN``.

The embedded servers are children of this process that end with it (parent-death signal);
leaving ``infrastructure()`` stops them in order, each within ``STOP_TIMEOUT`` seconds before it
is killed; ``Infrastructure.halt`` ends them at once, from any thread. Meanwhile
``Infrastructure.kept`` names them for ``server_keeper.keep_servers``, which starts one that ended
again."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator, Sequence

import psycopg
from psycopg import sql

from services.common.bus_trust import BusTrust
from services.supervisor.embedded import NatsServer
from services.supervisor.embedded_postgres import EmbeddedPostgres, dsn_with_dbname
from services.supervisor.server_keeper import KeptServer

__all__ = ["Infrastructure", "bus_trust_dir", "ensure_database", "infrastructure", "nats_data_dir"]

log = logging.getLogger(__name__)
DATABASE = "berth"
STOP_TIMEOUT = 5.0
HALT_WAIT = 3.0


class Infrastructure:
    """Addresses of the bus and the database in use."""

    def __init__(self, nats_url: str, pg_dsn: str, embedded: list[str],
                 kept: Sequence[KeptServer] = (), bus_trust: BusTrust | None = None) -> None:
        self.nats_url = nats_url
        self.bus_trust = bus_trust
        """The embedded NATS's trust (it issues each service's credential); None for ``BERTH_NATS_URL``."""
        self.pg_dsn = pg_dsn
        self.embedded = embedded
        self.kept = list(kept)
        """The embedded servers, to keep running (``server_keeper.keep_servers``)."""
        self._servers = [entry.server for entry in kept]

    def halt(self) -> None:
        """Ends the embedded servers at once (NATS: SIGKILL; PostgreSQL: immediate shutdown),
        waiting up to HALT_WAIT seconds for each; safe from another thread."""
        for server in self._servers:
            server.halt()
        for server in self._servers:
            server.halt(wait=HALT_WAIT)


def nats_data_dir(data_dir: Path) -> Path:
    """Returns where the embedded nats-server of the instance in ``data_dir`` keeps its state."""
    return data_dir / "nats"


def bus_trust_dir(data_dir: Path) -> Path:
    """Returns where the embedded bus's trust (keys, credentials) of ``data_dir`` lives (0700)."""
    return NatsServer.trust_dir(nats_data_dir(data_dir))


def ensure_database(admin_dsn: str, name: str = DATABASE) -> str:
    """Creates database ``name`` when missing (never drops anything); returns its DSN."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return dsn_with_dbname(admin_dsn, name)


@contextlib.contextmanager
def infrastructure(data_dir: Path, nats_url: str = "", pg_dsn: str = "") -> Iterator[Infrastructure]:
    """Yields the infrastructure, starting embedded servers in ``data_dir`` where no address is given."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        embedded: list[str] = []
        kept: list[KeptServer] = []
        bus_trust = None
        if not nats_url:
            nats = NatsServer()
            stack.callback(nats.stop, STOP_TIMEOUT)
            nats_url = nats.start(nats_data_dir(data_dir))
            kept.append(KeptServer("nats-server", nats, nats_url))
            bus_trust = nats.trust
            embedded.append(f"nats-server (pid {nats.pid}, data {nats_data_dir(data_dir)})")
        if not pg_dsn:
            postgres = EmbeddedPostgres()
            stack.callback(postgres.stop, STOP_TIMEOUT)
            admin_dsn = postgres.start(data_dir)
            kept.append(KeptServer("postgresql", postgres, admin_dsn))
            pg_dsn = ensure_database(admin_dsn)
            running = f"pid {postgres.pid}" if postgres.pid else "already running"
            embedded.append(f"postgresql ({running}, data {data_dir / 'pg'})")
        yield Infrastructure(nats_url, pg_dsn, embedded, kept, bus_trust)
