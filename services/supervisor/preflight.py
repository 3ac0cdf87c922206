"""What ``berth up`` checks before it starts anything: that no other ``berth up`` runs on its data
directory, and that the settings its services would only fail on later are sound.

A second ``berth up`` on one data directory would start a second nats-server on the same
JetStream store and a second agent of the same name: the first instance's sessions are lost, the
stream loses messages, and the second's exit removes the first's instance file. So the data
directory is locked (``flock`` on ``<data dir>/berth-up.lock``) for the supervisor's whole life;
the kernel releases the lock when the process ends, however it ends (``kill -9`` included), so it
is never stale. The lock file holds the holder's PID, for the refusal's message; it is left in
place at the end (removing a lock file another process may be opening would let two hold it).

The settings checked (``check_settings``) are those a service would otherwise exit on at its
start, over and over as its supervisor restarts it, after NATS and PostgreSQL were started: the
gateway's (and storage's) port being in use, several agents with a real backend, and a malformed
agent capacity. Each is parsed or tried the way the service does it. Each refusal is a
``StartRefused`` with one line for people."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from services.agent.capacity import CapacityError, resolve_capacity
from services.agent.fleet import fleet_settings
from services.common.settings import Settings
from services.gateway.main import bind_listener
from services.storage.server import parse_bind
from services.supervisor.runtime import StartRefused

__all__ = ["LOCK_FILE", "check_port", "check_settings", "holding_data_dir"]

LOCK_FILE = "berth-up.lock"


@contextlib.contextmanager
def holding_data_dir(data_dir: Path) -> Iterator[None]:
    """Holds the exclusive lock of ``data_dir`` (created when missing) for the ``with`` block;
    raises StartRefused, having changed nothing else, when another process holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / LOCK_FILE, "a+") as lock:  # "a+": the holder's PID stays until the lock is ours
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip()
            if holder.isdigit():
                raise StartRefused(f"Berth is already running on {data_dir} (pid {holder}); stop it first "
                                   f"(Ctrl-C in its terminal, or kill -TERM {holder})") from None
            raise StartRefused(f"Berth is already running on {data_dir}; stop it first "
                               f"(Ctrl-C in its terminal)") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        yield  # closing the file releases the lock


def check_port(what: str, host: str, port: int, instead: str) -> None:
    """Raises StartRefused when ``host:port`` cannot be bound now (0: any free port, not checked), bound as the
    gateway binds its listener; ``instead`` says what to do about it."""
    if port == 0:
        return
    try:
        bind_listener(host, port).close()
    except OSError as exc:
        raise StartRefused(f"the {what} cannot listen on {host}:{port} ({exc.strerror or exc}); {instead}") from None


def check_settings(settings: Settings) -> None:
    """Raises StartRefused naming the first setting the services could not start with: the gateway's
    or the storage's port in use, several agents with a real backend, a malformed agent capacity or
    reservation."""
    check_port("gateway", settings.gateway_host, settings.gateway_port,
               "choose another --port, or leave --port out for a free one")
    try:
        storage_host, storage_port = parse_bind(settings.storage_bind)
        fleet_settings(settings)
    except ValueError as exc:
        raise StartRefused(str(exc)) from None
    check_port("storage service", storage_host, storage_port, "choose another port in BERTH_STORAGE_BIND, or 0")
    try:
        resolve_capacity(settings.agent_capacity, reserved_cpu=settings.agent_reserved_cpu,
                         reserved_mem=settings.agent_reserved_mem)
    except CapacityError as exc:
        raise StartRefused(str(exc)) from None
