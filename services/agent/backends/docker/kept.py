"""What an ended kernel leaves on the node: its container's log and its exit, kept after the container is removed.

Both live in the kernel's directory (``KernelPaths.log``, ``KernelPaths.exit_file``) for ``BERTH_KERNEL_RETENTION``
(``../leftovers.py``): ``logs`` reads the log once the container is gone, and a repeated ``destroy`` answers
the recorded exit code.
"""

from __future__ import annotations

import asyncio
import json
import logging

from aiodocker.containers import DockerContainer
from aiodocker.exceptions import DockerError

from services.agent.backends.docker.spec import KernelPaths

__all__ = ["record_exit", "recorded_exit", "save_log"]

log = logging.getLogger(__name__)


async def save_log(container: DockerContainer, paths: KernelPaths, kernel_id: str) -> None:
    """Writes the container's log (stdout and stderr) to ``paths.log``; an engine that cannot give it is logged."""
    try:
        text = "".join(await container.log(stdout=True, stderr=True))
    except DockerError as exc:
        log.warning("cannot read the log of kernel %s: %s", kernel_id, exc)
        return
    paths.log.parent.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(paths.log.write_text, text)


def record_exit(paths: KernelPaths, exit_code: int | None, reason: str | None) -> None:
    """Writes the kernel's exit code and reason to ``paths.exit_file``."""
    paths.exit_file.parent.mkdir(parents=True, exist_ok=True)
    paths.exit_file.write_text(json.dumps({"exit_code": exit_code, "reason": reason}))


def recorded_exit(paths: KernelPaths) -> int | None:
    """The exit code ``record_exit`` kept; None when the kernel has none (never ran, or not ended here)."""
    if not paths.exit_file.exists():
        return None
    return json.loads(paths.exit_file.read_text()).get("exit_code")
