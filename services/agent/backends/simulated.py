"""A backend that runs nothing: kernels "start" after a delay and exist only in memory.

For tests and machines without a container engine. It goes through the same steps
as a real backend, so the agent reports exactly what a real agent would.
"""

from __future__ import annotations

import asyncio

from contracts.agent import KernelAssigned
from services.agent.backends.base import KernelBackend, KernelLaunch, ProgressHandler

__all__ = ["SimulatedBackend"]


class SimulatedBackend(KernelBackend):
    """Pretends to pull and start containers, each step taking ``delay`` seconds."""

    name = "simulated"

    def __init__(self, delay: float = 0.05) -> None:
        if delay < 0:
            raise ValueError(f"the simulated delay must not be negative, got {delay}")
        self.delay = delay
        self._running: dict[str, str] = {}

    async def prepare(self, kernel: KernelAssigned, progress: ProgressHandler | None = None) -> None:
        """Pretends to pull the kernel's image."""
        await asyncio.sleep(self.delay)

    async def create(self, launch: KernelLaunch) -> str:
        """Pretends to start the kernel; its container id is ``sim-<kernel_id>``."""
        kernel = launch.kernel
        if kernel.kernel_id in self._running:
            return self._running[kernel.kernel_id]
        await asyncio.sleep(self.delay)
        container_id = f"sim-{kernel.kernel_id}"
        self._running[kernel.kernel_id] = container_id
        return container_id

    async def destroy(self, kernel_id: str) -> int | None:
        """Forgets the kernel; its exit code is 0, None when it never started."""
        if self._running.pop(kernel_id, None) is None:
            return None
        return 0

    async def list_running(self) -> dict[str, str]:
        """Returns the kernels it pretends to run."""
        return dict(self._running)
