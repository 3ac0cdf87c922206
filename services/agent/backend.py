"""The port between the agent and whatever runs containers (simulated, Docker, processes).

The agent drives every backend the same way and reports each step itself:
``prepare`` (pull the image; reported as pulling), ``create`` (create and start the
container; reported as creating, then running) and ``destroy`` (reported as exited).
A backend knows nothing of NATS, reports or events beyond the assignment it is given.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from contracts.agent import KernelAssigned

__all__ = ["KernelBackend", "KernelStartError"]


class KernelStartError(Exception):
    """Raised by a backend when a kernel cannot be started and retrying will not help
    (unknown image, invalid limits); the agent reports the kernel as failed to start."""


class KernelBackend(ABC):
    """Runs kernels on this node. Every method is idempotent: an assignment or a termination
    may be delivered again after a crash or a restart of the agent."""

    name: str = "abstract"
    """Reported to the controller as the agent's backend."""

    async def prepare(self, kernel: KernelAssigned) -> None:
        """Makes the kernel's image available on this node (pulls it when missing)."""

    @abstractmethod
    async def create(self, kernel: KernelAssigned) -> str:
        """Creates and starts the kernel's container with its slots as limits; returns the
        container id. Returns the existing id when the kernel already runs."""

    @abstractmethod
    async def destroy(self, kernel_id: str) -> int | None:
        """Stops and removes the kernel's container; returns its exit code, or None when the
        kernel never ran here."""

    @abstractmethod
    async def list_running(self) -> dict[str, str]:
        """Returns the kernels running on this node: kernel id → container id."""

    async def close(self) -> None:
        """Releases what the backend holds (connections); kernels keep running."""
