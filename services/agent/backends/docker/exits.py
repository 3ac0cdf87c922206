"""Watches Docker for kernels of this agent that exit by themselves.

The watcher follows the engine's ``die`` events filtered by the agent's label, and on
every (re)connection also sweeps the exited containers it missed (while the agent was
down or the stream was broken). Only the containers of the agent's own Berth instance are taken
(``owner.py``: another instance's agent may have the same id). Each exit is classified (``exit_reason``)
and handed to the backend's callback; the callback keeps the log and removes the container.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

import aiodocker
from aiodocker.events import DockerEvents

from contracts.status import Reason
from services.agent.backends.docker.owner import Owner
from services.agent.backends.docker.spec import LABEL_KERNEL
from services.common.transient import unavailable_dependency

__all__ = ["LIVE_RESTORE_OFF", "ExitWatcher", "exit_detail", "exit_reason", "warn_without_live_restore"]

log = logging.getLogger(__name__)

SWEEP_EVERY = 30.0
"""Seconds between two sweeps while the stream is quiet (a safety net for missed events)."""
RECONNECT_DELAY = 1.0
MAX_RECONNECT_DELAY = 30.0

ContainerExit = Callable[[str, str], Awaitable[None]]
"""Called with (kernel id, container id) for each exited container of the agent and its instance."""


_SIGNALS = {1: "SIGHUP", 2: "SIGINT", 9: "SIGKILL", 15: "SIGTERM"}

LIVE_RESTORE_OFF = ("the Docker engine runs without live-restore: restarting it (an upgrade, `systemctl restart"
                    " docker`) ends every session of this agent; with `dockerd --live-restore` (or \"live-restore\": true in"
                    " /etc/docker/daemon.json) their containers, and the sessions, go on across its restarts")


def exit_detail(exit_code: int | None, *, oom_killed: bool, batch: bool) -> str | None:
    """Returns, for people, why a kernel that exited by itself ended when a signal Berth did not send ended
    it (exit code 128 + SIGHUP, SIGINT, SIGKILL or SIGTERM, not an OOM kill): ``docker stop`` or ``kill``, or
    the engine restarting without live-restore; None otherwise (the reason says it all)."""
    signal = _SIGNALS.get((exit_code or 0) - 128)
    if oom_killed or signal is None:
        return None
    if batch:
        return (f"the command ended by {signal} (exit {exit_code}): its own doing, or a stop from outside Berth"
                " (docker stop or kill, the Docker engine restarting)")
    return (f"the kernel was ended by {signal} (exit {exit_code}), which Berth did not send: docker stop or kill,"
            " or the Docker engine restarting (with live-restore its sessions would have gone on)")


async def warn_without_live_restore(docker: aiodocker.Docker) -> bool:
    """Logs ``LIVE_RESTORE_OFF`` once when the engine says it runs without live-restore; returns whether it
    did. An engine that cannot say (away for now) is not warned about: the exit watcher waits for it."""
    try:
        info = await docker.system.info()
    except Exception as exc:  # noqa: BLE001 - a hint at start only; the watch deals with an absent engine
        log.debug("cannot read the Docker engine's info: %s", _said(exc))
        return False
    if info.get("LiveRestoreEnabled", True):
        return False
    log.warning(LIVE_RESTORE_OFF)
    return True


def exit_reason(exit_code: int | None, *, oom_killed: bool, batch: bool) -> str:
    """Returns the reason of a kernel's own exit: ``oom-killed`` when the kernel hit its
    memory limit, ``task-finished`` / ``self-terminated`` for exit 0 of a batch / an
    interactive kernel, ``task-failed`` otherwise."""
    if oom_killed:
        return Reason.OOM_KILLED.value
    if exit_code == 0:
        return Reason.TASK_FINISHED.value if batch else Reason.SELF_TERMINATED.value
    return Reason.TASK_FAILED.value


async def _stopped(events: DockerEvents) -> None:
    """Stops an event stream. ``DockerEvents.stop`` raises the error its stream ended with (an engine that
    went away mid-stream: ``ClientPayloadError``); that end is what the watcher is recovering from,
    so it is not raised again here, where it would end the watch for good."""
    try:
        await events.stop()
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - the stream's own end, already handled by reconnecting
        log.debug("the Docker event stream ended with %s", _said(exc))


def _said(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class ExitWatcher:
    """Follows the ``die`` events of one agent's containers (of its instance) and sweeps missed exits."""

    def __init__(self, docker: aiodocker.Docker, owner: Owner, on_container_exit: ContainerExit) -> None:
        self._docker = docker
        self._owner = owner
        self._on_exit = on_container_exit

    async def run(self) -> None:
        """Watches until cancelled, reconnecting with backoff when the stream breaks."""
        delay = RECONNECT_DELAY
        while True:
            events = DockerEvents(self._docker)
            try:
                subscriber = events.subscribe(filters=self._filters())
                await self.sweep()
                delay = RECONNECT_DELAY
                while True:
                    try:
                        async with asyncio.timeout(SWEEP_EVERY):
                            event = await subscriber.get()
                    except TimeoutError:
                        await self.sweep()
                        continue
                    if event is None:
                        break
                    await self._handle(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the engine went away: reconnect and sweep what was missed
                log.warning("Docker event stream failed (%s); reconnecting in %.0f s", _said(exc), delay)
            finally:
                await _stopped(events)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RECONNECT_DELAY)

    async def sweep(self) -> None:
        """Hands over every exited container of this agent and instance still on the engine."""
        filters = {"label": self._owner.label_filter, "status": ["exited", "dead"]}
        for container in await self._docker.containers.list(all=True, filters=json.dumps(filters)):
            labels = container._container.get("Labels") or {}
            kernel_id = labels.get(LABEL_KERNEL)
            if kernel_id and self._owner.owns(container._container):
                await self._deliver(kernel_id, container.id)

    def _filters(self) -> str:
        return json.dumps({"type": ["container"], "event": ["die"], "label": self._owner.label_filter})

    async def _handle(self, event: dict) -> None:
        actor = event.get("Actor") or {}
        labels = actor.get("Attributes") or {}  # the container's labels (with its name and image)
        kernel_id, container_id = labels.get(LABEL_KERNEL), actor.get("ID") or event.get("id")
        if kernel_id and container_id and event.get("Action", event.get("status")) == "die":
            if await self._owns(labels, container_id):
                await self._deliver(kernel_id, container_id)

    async def _owns(self, labels: dict, container_id: str) -> bool:
        """Whether the container that died is this agent's, of this instance: its labels tell, or for one made
        before instance labels its mounts (inspected; one removed meanwhile is nobody's to report)."""
        verdict = self._owner.by_labels(labels)
        if verdict is not None:
            return verdict
        try:
            return self._owner.owns(await self._docker.containers.container(container_id).show())
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return False
            raise

    async def _deliver(self, kernel_id: str, container_id: str) -> None:
        try:
            await self._on_exit(kernel_id, container_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one failing kernel must not stop the watch; the next sweep retries
            if unavailable_dependency(exc) is None:
                log.exception("handling the exit of kernel %s failed", kernel_id)
            else:  # the engine going away: seen again by the sweep once it is back
                log.warning("handling the exit of kernel %s waits for Docker (%s)", kernel_id, _said(exc))
