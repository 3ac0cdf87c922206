"""Watches Docker for kernels of this agent that exit by themselves.

The watcher follows the engine's ``die`` events filtered by the agent's label, and on
every (re)connection also sweeps the exited containers it missed (while the agent was
down or the stream was broken). Each exit is classified (``exit_reason``) and handed to
the backend's callback; the callback keeps the log and removes the container.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

import aiodocker
from aiodocker.events import DockerEvents

from contracts.status import Reason
from services.agent.backends.docker.spec import LABEL_AGENT, LABEL_KERNEL
from services.common.transient import unavailable_dependency

__all__ = ["ExitWatcher", "exit_reason"]

log = logging.getLogger(__name__)

SWEEP_EVERY = 30.0
"""Seconds between two sweeps while the stream is quiet (a safety net for missed events)."""
RECONNECT_DELAY = 1.0
MAX_RECONNECT_DELAY = 30.0

ContainerExit = Callable[[str, str], Awaitable[None]]
"""Called with (kernel id, container id) for each exited container of the agent."""


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
    """Follows the ``die`` events of one agent's containers and sweeps missed exits."""

    def __init__(self, docker: aiodocker.Docker, agent_id: str, on_container_exit: ContainerExit) -> None:
        self._docker = docker
        self._agent_id = agent_id
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
                        event = await asyncio.wait_for(subscriber.get(), timeout=SWEEP_EVERY)
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
        """Hands over every exited container of this agent still on the engine."""
        filters = {"label": [f"{LABEL_AGENT}={self._agent_id}"], "status": ["exited", "dead"]}
        for container in await self._docker.containers.list(all=True, filters=json.dumps(filters)):
            labels = container._container.get("Labels") or {}
            kernel_id = labels.get(LABEL_KERNEL)
            if kernel_id:
                await self._deliver(kernel_id, container.id)

    def _filters(self) -> str:
        return json.dumps({"type": ["container"], "event": ["die"], "label": [f"{LABEL_AGENT}={self._agent_id}"]})

    async def _handle(self, event: dict) -> None:
        actor = event.get("Actor") or {}
        kernel_id = (actor.get("Attributes") or {}).get(LABEL_KERNEL)
        container_id = actor.get("ID") or event.get("id")
        if kernel_id and container_id and event.get("Action", event.get("status")) == "die":
            await self._deliver(kernel_id, container_id)

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
