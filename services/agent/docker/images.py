"""Makes a kernel image present on this node: inspected when there, pulled when not."""

from __future__ import annotations

import logging
import time

import aiodocker
from aiodocker.exceptions import DockerError

from services.agent.backend import KernelStartError

__all__ = ["ensure_image"]

log = logging.getLogger(__name__)

PROGRESS_EVERY = 2.0
"""Seconds between two progress lines of a pull."""


async def ensure_image(docker: aiodocker.Docker, image: str) -> bool:
    """Returns False when ``image`` is present, True after pulling it (progress is logged).
    Raises KernelStartError when it is neither present nor pullable."""
    try:
        await docker.images.inspect(image)
        return False
    except DockerError as exc:
        if exc.status != 404:
            raise
    log.info("pulling image %s", image)
    last = 0.0
    try:
        async for step in docker.images.pull(image, stream=True):
            if "error" in step:
                raise DockerError(500, str(step.get("error")))
            now = time.monotonic()
            if now - last >= PROGRESS_EVERY:
                last = now
                log.info("pull %s: %s %s", image, step.get("status", ""), step.get("progress", ""))
    except DockerError as exc:
        raise KernelStartError(f"image {image!r} not found and could not be pulled: {exc.message}") from exc
    try:
        await docker.images.inspect(image)
    except DockerError as exc:
        raise KernelStartError(f"image {image!r} not found and could not be pulled: {exc.message}") from exc
    log.info("pulled image %s", image)
    return True
