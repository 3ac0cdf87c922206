"""The Docker backend: each kernel is one container, limited, isolated and labelled.

Containers are named ``berth-<kernel_id>`` and labelled with the kernel, session, agent, its Berth
instance (``owner.py``) and cluster role, so an agent restarted after a crash finds (adopts) the containers
it started and never kills a healthy one, nor one of another instance. Per kernel it keeps ``<data_dir>/kernels/<id>/``:
``io/`` (the runner's socket directory), ``container.log`` and ``exit.json`` once the container
is gone, for ``BERTH_KERNEL_RETENTION`` (``leftovers.py``). The scratch (``/home/work``, ``/tmp``) is tmpfs of
bounded size, never the host's disk.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiodocker
from aiodocker.containers import DockerContainer
from aiodocker.exceptions import DockerError

from contracts.agent import KernelAssigned
from services.agent.backends.private import hand_over, private_dirs, take_back
from services.agent.backends.base import (
    ExitHandler,
    KernelBackend,
    KernelLaunch,
    KernelStartError,
    ProgressHandler,
)
from services.agent.backends.docker.confinement import AUTO_USER, kernel_user, scratch_sizes
from services.agent.backends.docker.container_log import log_tail
from services.agent.backends.docker.exits import ExitWatcher, exit_detail, exit_reason, warn_without_live_restore
from services.agent.backends.docker.images import PULL_POLICIES, ensure_image
from services.agent.backends.docker.io_mount import mount_io, unmount_io
from services.agent.backends.docker.kept import record_exit, recorded_exit, save_log
from services.agent.backends.docker.owner import Owner
from services.agent.backends.docker.registries import DOCKER_HUB, RegistryPolicy
from services.agent.backends.leftovers import DEFAULT_KEEP, Leftovers
from services.agent.backends.log_tail import LOG_LIMIT, file_tail
from services.agent.backends.dir_changes import DirectoryChanges, DirectoryWatcher
from services.agent.backends.folder_mounts import folder_binds
from services.agent.backends.docker.spec import (
    LABEL_AGENT,
    LABEL_KERNEL,
    LABEL_MODE,
    RUNNER_FILE,
    KernelPaths,
    container_config,
    container_name,
)

__all__ = ["DEFAULT_RUNNER_DIR", "DockerBackend"]

log = logging.getLogger(__name__)

DEFAULT_RUNNER_DIR = Path(__file__).resolve().parents[2] / "runner"
"""``services/agent/runner``: mounted read-only at ``/opt/berth/runner`` in every kernel."""
NEVER_STARTED = "0001-01-01T00:00:00Z"
LISTEN_TIMEOUT = 30.0
"""Seconds an interactive kernel's runner gets to open its socket after the start."""
POLL_INTERVAL = 0.005
"""Seconds between two looks for the runner's socket where its directory cannot be watched (``dir_changes.py``)."""
STATE_CHECK_PERIOD = 0.5
"""Seconds between two asks to the engine, while the start waits for the socket, whether the container still runs."""
IMAGES_REMEMBERED = 256  # images remembered as present (then all forgotten, the engine asked again)


class DockerBackend(KernelBackend):
    """Runs kernels as Docker containers through aiodocker."""

    name = "docker"

    def __init__(
        self,
        agent_id: str,
        data_dir: Path,
        *,
        grace: float = 10.0,
        runner_dir: Path | None = None,
        docker_url: str | None = None,
        pull: str = "missing",
        registries: str = DOCKER_HUB,
        user: str = AUTO_USER,
        scratch: str = "1g",
        tmp: str = "256m",
        volumes: Mapping[str, Path] | None = None,
        retention: float = DEFAULT_KEEP,
    ) -> None:
        """``user`` (``BERTH_KERNEL_USER``), ``scratch`` and ``tmp`` (``BERTH_KERNEL_SCRATCH``,
        ``BERTH_KERNEL_TMP``) are read by ``confinement.py``; a bad one is a ValueError naming it.
        ``volumes`` (``BERTH_STORAGE_VOLUMES``): the root of each storage volume on this node, from which
        sessions' folders are bind-mounted (none: a session with mounts fails to start). ``retention``
        (``BERTH_KERNEL_RETENTION``): seconds an ended kernel's directory is kept (``leftovers.py``; 0: for good).
        ``registries`` (``BERTH_IMAGE_REGISTRIES``): where a missing image may be pulled from (``registries.py``)."""
        if grace < 0:
            raise ValueError(f"the stop grace must not be negative, got {grace}")
        if pull not in PULL_POLICIES:
            raise ValueError(f"BERTH_IMAGE_PULL must be one of {', '.join(PULL_POLICIES)}, got {pull!r}")
        self.pull = pull
        self.registries = RegistryPolicy(registries)
        self.agent_id = agent_id
        self.data_dir = Path(data_dir).resolve()  # its kernels directory is the instance (``owner.py``)
        self._owner = Owner.of(agent_id, data_dir)
        self.grace = grace
        self.runner_dir = Path(runner_dir or DEFAULT_RUNNER_DIR).absolute()
        self.user = kernel_user(user)
        self.scratch = scratch_sizes(scratch, tmp)
        self.volumes = dict(volumes or {})
        self._url = docker_url
        self._docker: aiodocker.Docker | None = None
        self._stopping: set[str] = set()
        self._starting: set[str] = set()
        """Kernels whose start is in progress: their exit fails the start instead."""
        self._on_exit: ExitHandler | None = None
        self._leftovers = Leftovers(self.data_dir / "kernels", retention)
        self._dirs = DirectoryWatcher()  # a starting kernel's io/, for its runner's socket
        self._images: dict[str, tuple[str, ...]] = {}
        """Images seen present on this node, and the volumes each declares: ``prepare`` does not ask the engine
        again (1.6-2.1 ms a start); a container create that finds one gone has it pulled again, as ``docker run``
        does."""

    def _client(self) -> aiodocker.Docker:
        if self._docker is None:
            self._docker = aiodocker.Docker(url=self._url)
        return self._docker

    def _paths(self, kernel_id: str) -> KernelPaths:
        return KernelPaths.of(self.data_dir, kernel_id)

    async def prepare(self, kernel: KernelAssigned, progress: ProgressHandler | None = None) -> None:
        """Makes the kernel's image present: seen here before, inspected, or pulled with its
        progress told to ``progress`` and logged."""
        if kernel.image not in self._images:
            await self._ensure_image(kernel.image, progress)

    async def _ensure_image(self, image: str, progress: ProgressHandler | None = None) -> None:
        present = await ensure_image(self._client(), image, progress, pull=self.pull != "never",
                                     registries=self.registries)
        if len(self._images) >= IMAGES_REMEMBERED:
            self._images.clear()
        self._images[image] = present.volumes

    async def _volumes_of(self, image: str) -> tuple[str, ...]:
        """The volumes ``image`` declares (made present first when this agent has not seen it yet)."""
        if image not in self._images:
            await self._ensure_image(image)
        return self._images[image]

    async def create(self, launch: KernelLaunch) -> str:
        """Creates and starts the kernel's container; returns the id of the one already there
        (started if it was only created). A kernel that already exited here is not restarted."""
        kernel_id = launch.kernel.kernel_id
        paths = self._paths(kernel_id)
        existing = None if self._never_began(kernel_id) else await self._find(kernel_id)
        if existing is not None:
            state = existing["State"]
            if state.get("Status") == "created":
                await self._start(existing, kernel_id)
            if paths.socket.exists():  # the agent may have stopped before taking it back
                take_back(paths.io)
            return existing.id
        if paths.exit_file.exists():
            raise KernelStartError(f"kernel {kernel_id} already ran and exited on this node")
        if not (self.runner_dir / RUNNER_FILE).is_file() and not launch.kernel.startup_command:
            raise KernelStartError(f"the kernel runner {self.runner_dir / RUNNER_FILE} is missing")
        config = container_config(launch, agent_id=self.agent_id, paths=paths, runner_dir=self.runner_dir,
                                  user=self.user, scratch=self.scratch,
                                  folders=folder_binds(launch.kernel.mounts, self.volumes),
                                  image_volumes=await self._volumes_of(launch.kernel.image))
        private_dirs(paths.root, paths.io)
        self._leftovers.began(kernel_id)
        paths.socket.unlink(missing_ok=True)
        if not launch.kernel.startup_command:  # the runner creates its socket there; a batch kernel has none
            try:
                mount_io(paths.io, self.user.uid, self.user.gid)
            except OSError as exc:  # root without CAP_SYS_ADMIN (an agent in a container): never unbounded
                raise KernelStartError(f"kernel {kernel_id}: {exc.strerror}; the agent runs as root but cannot "
                                       "mount its kernels' socket directories (run it on the host)") from exc
            hand_over(paths.io, self.user.uid, self.user.gid)
        try:
            container = await self._create_container(config, kernel_id, launch.kernel.image)
        except KernelStartError:
            unmount_io(paths.io)
            raise
        except DockerError as exc:
            if exc.status == 409:  # created concurrently (a redelivered assignment), or its directory removed since
                return await self.create(launch)
            if exc.status in (400, 404):
                unmount_io(paths.io)
                raise KernelStartError(f"cannot create the container of kernel {kernel_id}: {exc.message}") from exc
            raise
        self._starting.add(kernel_id)
        try:
            with self._dirs.watch(paths.io, fallback=POLL_INTERVAL) as changes:  # before the runner can listen
                await self._start(container, kernel_id)
                if not launch.kernel.startup_command:
                    await self._until_listening(container, kernel_id, changes)
                    take_back(paths.io)
        finally:
            self._starting.discard(kernel_id)
        log.info("kernel %s started in container %s (%s)", kernel_id, container.id[:12], launch.kernel.image)
        return container.id

    async def _create_container(self, config: dict[str, Any], kernel_id: str, image: str) -> DockerContainer:
        """Creates the container; when the engine no longer has an image that ``prepare`` took as seen
        before (removed since), forgets it, makes it present again (pulled, without progress: the
        kernel is CREATING by then) and creates once more."""
        containers = self._client().containers
        try:
            return await containers.create(config, name=container_name(kernel_id))
        except DockerError as exc:
            if exc.status != 404 or image not in self._images:
                raise
        self._images.pop(image, None)
        log.warning("image %s is gone from this node since a start found it; making it present again", image)
        await self._ensure_image(image)
        return await containers.create(config, name=container_name(kernel_id))

    async def _start(self, container: DockerContainer, kernel_id: str) -> None:
        try:
            await container.start()
        except DockerError as exc:
            await save_log(container, self._paths(kernel_id), kernel_id)
            await self._discard(container, kernel_id)
            raise KernelStartError(f"cannot start the container of kernel {kernel_id}: {exc.message}") from exc

    async def _until_listening(self, container: DockerContainer, kernel_id: str, changes: DirectoryChanges) -> None:
        """Waits until the runner's socket appears (woken by ``changes`` in its directory); a runner that dies or
        stays silent fails the start (its log is kept, its container removed)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LISTEN_TIMEOUT
        socket, next_check = self._paths(kernel_id).socket, loop.time() + STATE_CHECK_PERIOD
        while not socket.exists():
            now = loop.time()
            if now >= next_check:
                next_check = now + STATE_CHECK_PERIOD
                if not (await container.show())["State"].get("Running"):
                    await save_log(container, self._paths(kernel_id), kernel_id)
                    await self._discard(container, kernel_id)
                    tail = self._paths(kernel_id).log.read_text(errors="replace")[-2000:]
                    raise KernelStartError(f"the runner of kernel {kernel_id} exited before listening: {tail}")
            if now > deadline:
                await save_log(container, self._paths(kernel_id), kernel_id)
                await self._discard(container, kernel_id)
                raise KernelStartError(f"the runner of kernel {kernel_id} did not listen within {LISTEN_TIMEOUT:.0f} s")
            await changes.wait(min(next_check, deadline) - loop.time())

    async def destroy(self, kernel_id: str) -> int | None:
        """Stops the container (SIGTERM, then SIGKILL after the grace), keeps its log and
        removes it; returns its exit code, None when the kernel never ran here."""
        self._stopping.add(kernel_id)
        container = await self._find(kernel_id)
        if container is None:
            unmount_io(self._paths(kernel_id).io)  # its container removed by someone else
            return recorded_exit(self._paths(kernel_id))
        if container["State"].get("Running"):
            try:
                await container.stop(t=round(self.grace))
            except DockerError as exc:
                if exc.status != 404:
                    raise
        try:
            state = (await container.show())["State"]
        except DockerError as exc:
            if exc.status == 404:  # removed meanwhile by the exit watcher
                return recorded_exit(self._paths(kernel_id))
            raise
        exit_code = None if state.get("StartedAt", NEVER_STARTED) == NEVER_STARTED else state.get("ExitCode")
        await save_log(container, self._paths(kernel_id), kernel_id)
        record_exit(self._paths(kernel_id), exit_code, None)
        await self._discard(container, kernel_id)
        log.info("kernel %s destroyed (exit code %s)", kernel_id, exit_code)
        return exit_code

    async def running_container(self, kernel_id: str) -> str | None:
        """Returns the id of the kernel's container when it runs and is this agent's, of this instance (one lookup
        by its name, whatever the agent runs; none for a kernel never begun here), else None."""
        if self._never_began(kernel_id):
            return None
        container = await self._named(kernel_id)
        if container is None or not self._owner.owns(container._container):
            return None
        return container.id if container["State"].get("Status") == "running" else None

    async def list_running(self) -> dict[str, str]:
        """Returns the running containers of this agent and instance (``owner.py``): kernel id → container id."""
        filters = {"label": self._owner.label_filter, "status": ["running"]}
        containers = await self._client().containers.list(filters=json.dumps(filters))
        running: dict[str, str] = {}
        for container in containers:
            kernel_id = (container._container.get("Labels") or {}).get(LABEL_KERNEL)
            if kernel_id and self._owner.owns(container._container):
                running[kernel_id] = container.id
        return running

    async def watch(self, on_exit: ExitHandler) -> None:
        """Calls ``on_exit`` for each container of this agent and instance that exits by itself (also those
        that exited while the agent was down), until cancelled; says first when the engine runs without
        live-restore (its restart would end every kernel)."""
        self._on_exit = on_exit
        await warn_without_live_restore(self._client())
        await ExitWatcher(self._client(), self._owner, self._container_exited).run()

    async def _container_exited(self, kernel_id: str, container_id: str) -> None:
        if kernel_id in self._stopping or kernel_id in self._starting or self._on_exit is None:
            return
        container = self._client().containers.container(container_id)
        try:
            info = await container.show()
        except DockerError as exc:
            if exc.status == 404:
                return
            raise
        state = info["State"]
        if state.get("Running") or kernel_id in self._stopping:
            return
        exit_code = state.get("ExitCode")
        batch = (info["Config"].get("Labels") or {}).get(LABEL_MODE) == "batch"
        oom_killed = bool(state.get("OOMKilled"))
        reason = exit_reason(exit_code, oom_killed=oom_killed, batch=batch)
        detail = exit_detail(exit_code, oom_killed=oom_killed, batch=batch)
        await save_log(container, self._paths(kernel_id), kernel_id)
        record_exit(self._paths(kernel_id), exit_code, reason)
        log.info("kernel %s exited by itself: code %s, %s", kernel_id, exit_code, reason)
        await self._on_exit(kernel_id, exit_code, reason, detail)
        await self._discard(container, kernel_id)

    async def sweep(self) -> list[str]:
        """Removes the directories (kept log and exit) of the kernels ended longer than the retention ago;
        a kernel whose container is still there, or whose ``io/`` is still mounted, keeps its own."""
        return await self._leftovers.sweep(self._in_use)

    async def _in_use(self, kernel_id: str) -> bool:
        return os.path.ismount(self._paths(kernel_id).io) or await self._named(kernel_id) is not None

    def runner_socket(self, kernel_id: str) -> Path | None:
        """Returns ``<data_dir>/kernels/<kernel_id>/io/runner.sock``."""
        return self._paths(kernel_id).socket

    async def logs(self, kernel_id: str, tail: int | None = None, limit: int = LOG_LIMIT) -> str:
        """Returns the end of the live container log (``container_log.log_tail``: only that end is read), or of the
        one kept after the container was removed."""
        container = await self._find(kernel_id)
        if container is not None:
            try:
                return await log_tail(container, tail, limit)
            except DockerError as exc:
                if exc.status not in (404, 409):  # gone, or being removed (its log is kept by then)
                    raise
        return await asyncio.to_thread(file_tail, self._paths(kernel_id).log, tail, limit)

    async def close(self) -> None:
        """Closes the connection to the engine and the directory watcher; the containers keep running."""
        self._dirs.close()
        if self._docker is not None:
            docker, self._docker = self._docker, None
            await docker.close()

    def _never_began(self, kernel_id: str) -> bool:
        """True when no start of the kernel began on this node (``create`` makes its directory before the container,
        and keeps it after): a first start asks the engine nothing before its create. A container whose directory
        was removed by hand is found by the create's name conflict."""
        return not self._paths(kernel_id).root.exists()

    async def _find(self, kernel_id: str) -> DockerContainer | None:
        """The kernel's container, None when there is none; raises when another agent's (or another instance's
        agent of the same id, ``owner.py``) has its name."""
        container = await self._named(kernel_id)
        if container is not None and not self._owner.owns(container._container):
            agent = (container["Config"].get("Labels") or {}).get(LABEL_AGENT)
            whose = "another Berth instance's agent of the same id" if agent == self.agent_id else f"agent {agent!r}"
            raise KernelStartError(f"container {container_name(kernel_id)} belongs to {whose}")
        return container

    async def _named(self, kernel_id: str) -> DockerContainer | None:
        """The container with the kernel's name, whoever's it is; None when there is none."""
        try:
            return await self._client().containers.get(container_name(kernel_id))
        except DockerError as exc:
            if exc.status == 404:
                return None
            raise

    async def _discard(self, container: DockerContainer, kernel_id: str) -> None:
        """Removes the kernel's container, then unmounts its ``io/`` tmpfs (``io_mount.py``)."""
        await _remove(container)
        unmount_io(self._paths(kernel_id).io)


async def _remove(container: DockerContainer) -> None:
    try:
        await container.delete(force=True, v=True)  # an anonymous volume, if any, goes with it
    except DockerError as exc:
        if exc.status not in (404, 409):  # gone already, or removal already in progress
            raise
