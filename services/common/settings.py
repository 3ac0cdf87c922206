"""Settings of every service, read from ``BERTH_*`` environment variables."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from contracts.status import SessionStatus

__all__ = ["DEFAULT_IMAGE", "Settings", "default_cache_dir", "default_data_dir"]

DEFAULT_IMAGE = "berth/python:latest"
"""The kernel image of a session that names none (built offline by ops/images/build-python-image)."""


def default_data_dir() -> Path:
    """Returns ``$BERTH_DATA_DIR`` or ``~/.berth``: where ``berth up`` keeps its state."""
    return Path(os.environ.get("BERTH_DATA_DIR") or Path.home() / ".berth")


def default_cache_dir() -> Path:
    """Returns ``$BERTH_CACHE_DIR``, else ``$XDG_CACHE_HOME/berth`` or ``~/.cache/berth``: what
    can be rebuilt but is slow to (the kernel image's root filesystem)."""
    if os.environ.get("BERTH_CACHE_DIR"):
        return Path(os.environ["BERTH_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "berth"


def _decode_path(type_: type, value: object) -> object:
    if type_ is Path and isinstance(value, (str, Path)):
        return Path(value)
    raise NotImplementedError(f"cannot convert {value!r} to {type_}")


class Settings(msgspec.Struct, kw_only=True):
    nats_url: str = ""
    nats_creds: str = ""
    """The NATS credential (``.creds`` file) to connect with (``BERTH_NATS_CREDS``); an agent's may
    hold ``{agent_id}``, replaced by each agent's id (a fleet: one credential per agent)."""
    pg_dsn: str = ""
    data_dir: Path = msgspec.field(default_factory=default_data_dir)
    cache_dir: Path = msgspec.field(default_factory=default_cache_dir)
    default_image: str = DEFAULT_IMAGE
    """The kernel image of a session that names none, which ``berth up`` makes present."""
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 0
    agent_id: str = "local"
    agent_backend: str = "simulated"
    agent_resource_group: str = "default"
    agents: int = 1
    """How many agents ``berth up`` runs (more than one only with the simulated backend)."""
    agent_capacity: str = "cpu=4,mem=8g"
    agent_reserved_cpu: str = "0"
    agent_reserved_mem: str = "0"
    agent_accelerators: str = ""
    docker_stop_grace: float = 10.0
    image_pull: str = "missing"
    """When the agent pulls a kernel image: ``missing`` (when not on the node) or ``never`` (offline
    nodes and tests: a missing image fails the start at once, without asking any registry)."""
    image_registries: str = "docker.io"
    """The registries the agent pulls kernel images from (``host[:port],...``, ``*``: any); an image of
    another is run only when already on the node (``services.agent.backends.docker.registries``)."""
    app_tunnel_host: str = "127.0.0.1"
    """Where the agent listens for the gateway's connections to its kernels' apps (``services.agent.app_tunnels``):
    an address the gateway reaches (a node of several: the node's own; each connection must first send a
    one-time nonce the agent handed over the bus)."""
    app_tunnel_port: int = 0
    """Its port (0: a free one, told to the gateway with each offer)."""
    kernel_user: str = "auto"
    """``uid:gid`` Docker kernels run as (never root); ``auto``: 1000:1000 under a root agent, else the agent's own."""
    kernel_scratch: str = "1g"
    """Size of a Docker kernel's ``/home/work`` (tmpfs, at most half its ``mem`` slot)."""
    kernel_tmp: str = "256m"
    """Size of a Docker kernel's ``/tmp`` (tmpfs, at most a quarter of its ``mem`` slot)."""
    storage_volumes: str = ""
    """Storage volumes of this machine, ``name=/path[,...]`` (``services.common.volumes``); empty: ``local``
    at ``<data dir>/storage/local``. Agents bind-mount session folders from these roots."""
    sim_delay: float = 0.05
    heartbeat_interval: float = 1.0
    heartbeat_timeout: float = 5.0
    """Seconds without a heartbeat after which an agent is lost: nothing new is placed on it."""
    agent_lost_grace: float = 60.0
    """Seconds a lost agent's kernels are given to come back with it (their sessions stay) before they
    are marked exited ``agent-lost`` and their sessions end (0: at once)."""
    stuck_scheduled_timeout: float = 300.0
    """Seconds a session may stay SCHEDULED before the controller ends it in ERROR (0: never)."""
    stuck_preparing_timeout: float = 900.0
    """Seconds a session may stay PREPARING without any pull progress (0: never)."""
    stuck_creating_timeout: float = 300.0
    """Seconds a session may stay CREATING (0: never)."""
    stuck_terminating_timeout: float = 300.0
    """Seconds a session may stay TERMINATING (0: never)."""
    storage_url: str = ""
    """The storage service's HTTP base URL, handed out by the gateway with each storage token
    (``BERTH_STORAGE_URL``; ``berth up`` sets it)."""
    storage_key_file: str = ""
    """The storage tokens' signing key (32 bytes, 0600) shared by the gateway and the storage service;
    empty: ``<data dir>/storage.key``."""
    storage_bind: str = "127.0.0.1:0"
    """``host:port`` the storage service's HTTP data plane listens on (port 0: a free one)."""
    storage_usage_interval: float = 60.0
    """Seconds between two measures of every folder's usage by the storage service."""
    storage_upload_ttl: float = 86400.0
    """Seconds an unfinished upload is kept before it is removed (its bytes released)."""
    reconcile_interval: float = 60.0
    """Seconds between two comparisons of an agent's containers with its assigned kernels."""
    kernel_retention: float = 604800.0
    """Seconds an agent keeps an ended kernel's directory (its log; Docker's exit, the process backend's working
    directory) after its last change: a week (0: for good)."""

    def stuck_deadlines(self) -> dict[SessionStatus, float]:
        """Returns the seconds a session may stay in each transitional status (0: no deadline), from
        ``BERTH_STUCK_<STATUS>_TIMEOUT``; raises ValueError for a negative one."""
        deadlines = {
            SessionStatus.SCHEDULED: self.stuck_scheduled_timeout,
            SessionStatus.PREPARING: self.stuck_preparing_timeout,
            SessionStatus.CREATING: self.stuck_creating_timeout,
            SessionStatus.TERMINATING: self.stuck_terminating_timeout,
        }
        for status, seconds in deadlines.items():
            if seconds < 0:
                raise ValueError(f"BERTH_STUCK_{status.value}_TIMEOUT must not be negative, got {seconds}")
        return deadlines

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> "Settings":
        """Returns settings from ``BERTH_<FIELD>`` variables, then ``overrides``."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in msgspec.structs.fields(cls):
            raw = env.get(f"BERTH_{field.name.upper()}")
            if raw is not None and raw != "":
                values[field.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return msgspec.convert(values, cls, strict=False, dec_hook=_decode_path)
