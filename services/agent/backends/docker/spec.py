"""Pure translation of a kernel launch into a Docker container create config.

Nothing here talks to Docker or touches the disk, so the limits and the security
options are tested without an engine. Backend.AI facts: ``Memory = MemorySwap``
(no swap), the CPU slot becomes a CFS quota (``NanoCpus``), and every kernel runs
without network, without capabilities and without privilege escalation.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any

from contracts.subjects import check_token

from services.agent.backends.base import KernelLaunch, KernelStartError
from services.agent.backends.docker.confinement import KernelUser, Scratch, bounded_by_slots
from services.agent.backends.folder_mounts import FolderBind

__all__ = [
    "CONTAINER_IO",
    "CONTAINER_RUNNER",
    "CONTAINER_TMP",
    "CONTAINER_WORK",
    "LABEL_AGENT",
    "LABEL_INSTANCE",
    "LABEL_KERNEL",
    "LABEL_MODE",
    "LABEL_ROLE",
    "LABEL_SESSION",
    "MIN_MEMORY",
    "KernelPaths",
    "container_config",
    "container_name",
    "device_env",
    "instance_of",
    "kernel_command",
    "limits",
    "scratch_mounts",
    "volume_mounts",
]

LABEL_KERNEL = "berth.kernel_id"
LABEL_SESSION = "berth.session_id"
LABEL_AGENT = "berth.agent_id"
LABEL_INSTANCE = "berth.instance"
"""The Berth instance whose agent made the container (``instance_of`` its kernels directory): agents of several
instances on one engine may have the same id (``owner.py``)."""
LABEL_ROLE = "berth.cluster_role"
LABEL_MODE = "berth.mode"
"""``batch`` when the kernel runs its startup command, ``interactive`` when it runs the runner."""

CONTAINER_WORK = PurePosixPath("/home/work")
CONTAINER_TMP = PurePosixPath("/tmp")
CONTAINER_RUNNER = PurePosixPath("/opt/berth/runner")
CONTAINER_IO = PurePosixPath("/opt/berth/io")
CONTAINER_CGROUP = PurePosixPath("/sys/fs/cgroup")
"""The container's own cgroup filesystem (Docker mounts it read-only): the runner reads its memory
limit and OOM kills there, to tell a run that lost a process to the limit."""
RUNNER_FILE = "berth_runner.py"
SOCKET_NAME = "runner.sock"

MIN_MEMORY = 6 * 1024 * 1024
"""Docker refuses memory limits under 6 MiB."""
CPU_PERIOD_NS = 1_000_000_000
DEFAULT_PIDS_LIMIT = 1024
LOG_MAX_SIZE = "10m"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class KernelPaths:
    """Host paths of one kernel under ``<data_dir>/kernels/<kernel_id>``."""

    root: Path

    @classmethod
    def of(cls, data_dir: Path, kernel_id: str) -> KernelPaths:
        """Returns the paths of ``kernel_id`` under ``data_dir``; ``SubjectError`` (a ValueError) when the id
        is not a plain token (``../x`` must never name a path outside ``kernels/``)."""
        return cls(Path(data_dir).absolute() / "kernels" / check_token(kernel_id, "kernel id"))

    @property
    def io(self) -> Path:
        """The directory of the runner's socket, mounted at ``/opt/berth/io`` (writable by the kernel only
        while its runner starts)."""
        return self.root / "io"

    @property
    def socket(self) -> Path:
        """The host path of the runner's Unix socket."""
        return self.io / SOCKET_NAME

    @property
    def log(self) -> Path:
        """Where the container log is kept after the container is removed."""
        return self.root / "container.log"

    @property
    def exit_file(self) -> Path:
        """Where the exit code and reason are kept after the container is removed."""
        return self.root / "exit.json"


def instance_of(kernels_dir: Path) -> str:
    """Returns the instance of the agent whose kernels live in ``kernels_dir`` (resolved by the backend): the first
    16 hex digits of the SHA-256 of its path. The same directory gives the same instance at every restart; two
    instances on one host never share it (their kernels' directories and sockets would clash)."""
    return hashlib.sha256(str(kernels_dir).encode()).hexdigest()[:16]


def container_name(kernel_id: str) -> str:
    """Returns the container name of a kernel: ``berth-<kernel_id>``."""
    return f"berth-{kernel_id}"


def limits(slots: Mapping[str, Decimal]) -> dict[str, int]:
    """Returns the HostConfig limits for the ``cpu`` and ``mem`` slots: ``NanoCpus`` (a CFS
    quota of ``cpu`` cores) and ``Memory`` = ``MemorySwap`` (no swap). A missing or zero slot
    sets no limit; an amount Docker cannot honour raises KernelStartError."""
    out: dict[str, int] = {}
    cpu = Decimal(slots.get("cpu", 0))
    if cpu < 0:
        raise KernelStartError(f"cpu slot must not be negative, got {cpu}")
    if cpu > 0:
        nano = int(cpu * CPU_PERIOD_NS)
        if nano < CPU_PERIOD_NS // 100:
            raise KernelStartError(f"cpu slot {cpu} is below Docker's minimum of 0.01 cores")
        out["NanoCpus"] = nano
    mem = Decimal(slots.get("mem", 0))
    if mem < 0:
        raise KernelStartError(f"mem slot must not be negative, got {mem}")
    if mem > 0:
        memory = int(mem)
        if memory < MIN_MEMORY:
            raise KernelStartError(f"mem slot {memory} bytes is below Docker's minimum of {MIN_MEMORY} (6 MiB)")
        out["Memory"] = memory
        out["MemorySwap"] = memory
    return out


def device_env(devices: Mapping[str, list[str]]) -> dict[str, str]:
    """Returns the variables naming the devices allocated per accelerator slot:
    ``BERTH_DEVICES_<SLOT>`` for each slot and ``CUDA_VISIBLE_DEVICES`` for ``cuda.device``."""
    env: dict[str, str] = {}
    for slot, ids in sorted(devices.items()):
        key = "BERTH_DEVICES_" + re.sub(r"[^A-Za-z0-9]", "_", slot).upper()
        env[key] = ",".join(ids)
        if slot == "cuda.device":
            env["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
    return env


def kernel_command(startup_command: str | None) -> list[str]:
    """Returns the container command: the startup command through ``/bin/sh -c`` for a
    batch kernel (its exit code is the task's), else the kernel runner on its socket."""
    if startup_command:
        return ["/bin/sh", "-c", startup_command]
    return [
        "python3",
        str(CONTAINER_RUNNER / RUNNER_FILE),
        "--socket",
        str(CONTAINER_IO / SOCKET_NAME),
        "--cgroup",
        str(CONTAINER_CGROUP),
    ]


def _environment(launch: KernelLaunch) -> list[str]:
    env = {"HOME": str(CONTAINER_WORK), "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}
    env.update(device_env(launch.devices))
    env.update(launch.env)
    for name in env:
        if not _ENV_NAME.match(name):
            raise KernelStartError(f"invalid environment variable name {name!r}")
    return [f"{name}={value}" for name, value in sorted(env.items())]


def _bind(source: Path, target: PurePosixPath, *, read_only: bool) -> dict[str, Any]:
    return {"Type": "bind", "Source": str(source), "Target": str(target), "ReadOnly": read_only}


def volume_mounts(volumes: Sequence[str], taken: Collection[str], size: int | str) -> dict[str, str]:
    """Returns ``HostConfig.Tmpfs`` entries for the image's declared ``volumes`` that no mount in ``taken`` covers
    (the engine makes an anonymous volume only where no mount is): each a tmpfs of ``size``, writable by
    anyone (sticky, as ``/tmp``), never setuid. KernelStartError for a path that is not a normal absolute one
    below ``/`` (an image may declare anything)."""
    mounts: dict[str, str] = {}
    for volume in volumes:
        path = PurePosixPath(volume)
        if not path.is_absolute() or str(path) != volume.rstrip("/") or len(path.parts) < 2 or ".." in path.parts:
            raise KernelStartError(f"the image declares the volume {volume!r}: not a path a kernel can be given")
        if str(path) not in taken:
            mounts[str(path)] = f"rw,exec,nosuid,nodev,size={size},mode=1777"
    return mounts


def scratch_mounts(scratch: Scratch, user: KernelUser) -> dict[str, str]:
    """Returns ``HostConfig.Tmpfs``: ``/home/work`` (owned by ``user``) and ``/tmp`` (sticky, like any
    ``/tmp``), each a tmpfs of its size, executable (kernels run what they build) but never setuid."""
    common = "rw,exec,nosuid,nodev"
    return {
        str(CONTAINER_WORK): f"{common},size={scratch.work},uid={user.uid},gid={user.gid},mode=0755",
        str(CONTAINER_TMP): f"{common},size={scratch.tmp},mode=1777",
    }


def container_config(
    launch: KernelLaunch,
    *,
    agent_id: str,
    paths: KernelPaths,
    runner_dir: Path,
    user: KernelUser,
    scratch: Scratch,
    pids_limit: int = DEFAULT_PIDS_LIMIT,
    folders: Sequence[FolderBind] = (),
    image_volumes: Sequence[str] = (),
) -> dict[str, Any]:
    """Returns the body of ``POST /containers/create`` for ``launch``: image, command,
    environment, labels (the agent's id, and its instance: ``instance_of`` the kernels directory of ``paths``),
    mounts (runner read-only, socket directory: read-only for a batch
    kernel, which has no runner) and a HostConfig with the kernel's limits, no network, no
    capabilities, no new privileges, a read-only root filesystem and ``scratch`` (capped by the
    ``mem`` slot) as the tmpfs ``/home/work`` and ``/tmp``, the session's ``folders`` bound at their targets
    (read-only for ``ro`` mounts: a write fails with EROFS); the kernel runs as ``user``, never root. Each of
    the ``image_volumes`` (``images.image_volumes``) that nothing else is mounted at is a tmpfs of ``/tmp``'s size
    (``volume_mounts``): the engine would have made an anonymous volume there, on the host's disk, unbounded."""
    kernel = launch.kernel
    if not kernel.image:
        raise KernelStartError("the kernel has no image")
    if pids_limit <= 0:
        raise KernelStartError(f"pids limit must be positive, got {pids_limit}")
    batch = bool(kernel.startup_command)
    host_config: dict[str, Any] = {
        "NetworkMode": "none",
        "Privileged": False,
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges"],
        "PidsLimit": pids_limit,
        "Init": True,
        "ReadonlyRootfs": True,
        "Mounts": [
            _bind(Path(runner_dir).absolute(), CONTAINER_RUNNER, read_only=True),
            _bind(paths.io, CONTAINER_IO, read_only=batch),
            *(_bind(f.source, PurePosixPath(f.target), read_only=f.read_only) for f in folders),
        ],
        "LogConfig": {"Type": "json-file", "Config": {"max-size": LOG_MAX_SIZE, "max-file": "2"}},
        "RestartPolicy": {"Name": "no"},
        **limits(kernel.slots),
    }
    bounded = bounded_by_slots(scratch, kernel.slots)
    tmpfs = scratch_mounts(bounded, user)
    taken = {*tmpfs, *(mount["Target"] for mount in host_config["Mounts"])}
    host_config["Tmpfs"] = {**tmpfs, **volume_mounts(image_volumes, taken, bounded.tmp)}
    config: dict[str, Any] = {
        "Image": kernel.image,
        "Cmd": kernel_command(kernel.startup_command),
        "Env": _environment(launch),
        "WorkingDir": str(CONTAINER_WORK),
        "User": str(user),
        "Labels": {
            LABEL_KERNEL: kernel.kernel_id,
            LABEL_SESSION: kernel.session_id,
            LABEL_AGENT: agent_id,
            LABEL_INSTANCE: instance_of(paths.root.parent),
            LABEL_ROLE: kernel.cluster_role,
            LABEL_MODE: "batch" if batch else "interactive",
        },
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "Tty": False,
        "OpenStdin": False,
        "HostConfig": host_config,
    }
    return config
