"""The port between the agent and whatever runs containers (simulated, Docker, processes).

The agent drives every backend the same way and reports each step itself:
``prepare`` (pull the image; reported as pulling), ``create`` (create and start the
container; reported as creating, then running) and ``destroy`` (reported as exited).
A backend knows nothing of NATS, reports or events beyond the assignment it is given.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Awaitable, Callable, Protocol

import msgspec

from contracts.agent import KernelAssigned
from services.agent.backends.log_tail import LOG_LIMIT

__all__ = ["ExitHandler", "KernelBackend", "KernelLaunch", "KernelStartError", "ProgressHandler"]


class KernelLaunch(msgspec.Struct, frozen=True, kw_only=True):
    """What a backend needs to start one kernel: the assignment, its environment
    (``BERTH_SESSION_ID``, ``BERTH_KERNEL_ID``, device variables, ...) and the concrete
    devices allocated on this node per accelerator slot (e.g. ``{"cuda.device": ["0", "1"]}``)."""

    kernel: KernelAssigned
    env: dict[str, str]
    devices: dict[str, list[str]] = {}


class ExitHandler(Protocol):
    """Called with (kernel id, exit code, reason, detail for people or None) when a kernel's container
    exits by itself."""

    def __call__(self, kernel_id: str, exit_code: int | None, reason: str, detail: str | None = None,
                 /) -> Awaitable[None]:
        ...

ProgressHandler = Callable[[str], Awaitable[None]]
"""Called with a short line for people each time a kernel's preparation advances (an image
pull's layers and bytes); the caller throttles what it reports."""


class KernelStartError(Exception):
    """Raised by a backend when a kernel cannot be started and retrying will not help
    (unknown image, invalid limits); the agent reports the kernel as failed to start, with
    the message as its cause: say what failed and name the image, limit or file involved."""


class KernelBackend(ABC):
    """Runs kernels on this node. Every method is idempotent: an assignment or a termination
    may be delivered again after a crash or a restart of the agent."""

    name: str = "abstract"
    """Reported to the controller as the agent's backend."""

    async def prepare(self, kernel: KernelAssigned, progress: ProgressHandler | None = None) -> None:
        """Makes the kernel's image available on this node (pulls it when missing, telling
        ``progress`` how the pull advances)."""

    @abstractmethod
    async def create(self, launch: KernelLaunch) -> str:
        """Creates and starts the kernel's container with its slots as limits; returns the
        container id. Returns the existing id when the kernel already runs."""

    @abstractmethod
    async def destroy(self, kernel_id: str) -> int | None:
        """Stops and removes the kernel's container; returns its exit code, or None when the
        kernel never ran here."""

    @abstractmethod
    async def list_running(self) -> dict[str, str]:
        """Returns the kernels running on this node: kernel id → container id."""

    async def running_container(self, kernel_id: str) -> str | None:
        """Returns the container id of ``kernel_id`` when it runs on this node, else None. A backend
        whose ``list_running`` costs more than one lookup (Docker lists every container of the agent)
        answers from the kernel's own container, so that a start costs the same however many kernels run."""
        return (await self.list_running()).get(kernel_id)

    async def sweep(self) -> list[str]:
        """Removes what ended kernels left on this node once kept past the backend's retention; returns their
        ids. Backends that leave nothing behind have nothing to sweep."""
        return []

    async def watch(self, on_exit: ExitHandler) -> None:
        """Calls ``on_exit`` for each kernel that exits by itself, until cancelled. Backends
        whose kernels never exit on their own return at once."""

    def runner_socket(self, kernel_id: str) -> Path | None:
        """Returns the host path of the kernel runner's Unix socket, None when there is none."""
        return None

    async def logs(self, kernel_id: str, tail: int | None = None, limit: int = LOG_LIMIT) -> str:
        """Returns the end of the kernel's container log (kept after exit): its last ``tail`` lines (None: as many
        as fit) within its last ``limit`` bytes, reading no more of it than that needs; empty when there is none."""
        return ""

    async def close(self) -> None:
        """Releases what the backend holds (connections); kernels keep running."""
