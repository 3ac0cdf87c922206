"""Makes a kernel image present on this node: inspected when there, pulled when not.

A pull's progress is summed over its layers (how many are done, bytes downloaded of the bytes
known) into one short line for people, handed to a ``ProgressHandler`` at every step (the agent
throttles what it reports) and logged every ``PROGRESS_EVERY`` seconds. A pull that fails, or
that makes no progress for ``PULL_STALL_TIMEOUT`` seconds, is a ``KernelStartError`` naming the
image and the registry's or Docker's message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, NamedTuple

import aiodocker
from aiodocker.exceptions import DockerError

from services.agent.backends.base import KernelStartError, ProgressHandler
from services.agent.backends.docker.registries import RegistryPolicy

__all__ = ["PULL_POLICIES", "PresentImage", "PullProgress", "ensure_image", "human_bytes"]

log = logging.getLogger(__name__)

PROGRESS_EVERY = 2.0
"""Seconds between two progress lines of a pull in the log."""
PULL_STALL_TIMEOUT = 120.0
"""Seconds a pull may go without any news from the engine before it is given up."""
ENGINE_UNREACHABLE = 900
"""aiodocker's status for "cannot connect to the Docker engine"."""
_DONE = ("Pull complete", "Already exists")


PULL_POLICIES = ("missing", "never")
"""``BERTH_IMAGE_PULL``: pull an image the node lacks, or never ask a registry."""


def human_bytes(amount: int | float) -> str:
    """Returns ``amount`` bytes as Docker shows them: ``512 B``, ``45.2 MB``, ``1.3 GB``."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(amount) < 1000 or unit == "GB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1000
    raise AssertionError("unreachable")


class PullProgress:
    """Sums the steps of one image pull (Docker's JSON progress messages) over its layers."""

    def __init__(self, image: str) -> None:
        self.image = image
        self.status = "waiting for the registry"
        self._layers: dict[str, tuple[int, int]] = {}
        """Layer id → (bytes downloaded, bytes in all; 0 while unknown)."""
        self._done: set[str] = set()

    def step(self, message: dict[str, Any]) -> None:
        """Takes one progress message of the engine into account."""
        layer, status = message.get("id"), str(message.get("status") or "")
        if not layer or not status or status.startswith(("Pulling from", "Digest:", "Status:")):
            self.status = status or self.status
            return
        current, total = self._layers.get(layer, (0, 0))
        detail = message.get("progressDetail") or {}
        if status == "Downloading" and detail.get("total"):
            current, total = int(detail.get("current") or 0), int(detail["total"])
        elif status in ("Download complete", "Extracting", *_DONE):
            current = total
        self._layers[layer] = (current, total)
        if status in _DONE:
            self._done.add(layer)

    def line(self) -> str:
        """Returns where the pull stands: ``pulling IMAGE: 3/7 layers, 45.2 MB of 120.0 MB``."""
        if not self._layers:
            return f"pulling {self.image}: {self.status}"
        got = sum(current for current, _ in self._layers.values())
        known = sum(total for _, total in self._layers.values())
        size = f", {human_bytes(got)} of {human_bytes(known)}" if known else ""
        return f"pulling {self.image}: {len(self._done)}/{len(self._layers)} layers{size}"

    def summary(self, seconds: float) -> str:
        """Returns the last line of a finished pull: ``pulled IMAGE: 7 layers, 120.0 MB in 14 s``."""
        known = sum(total for _, total in self._layers.values())
        size = f", {human_bytes(known)}" if known else ""
        return f"pulled {self.image}: {len(self._layers)} layers{size} in {seconds:.0f} s"


class PresentImage(NamedTuple):
    """An image ``ensure_image`` made present: whether it pulled it, and the paths it declares as volumes (its
    Dockerfile's ``VOLUME``, sorted: the engine would make an anonymous volume at each, on the host's disk,
    unbounded by the kernel's slots and kept after its container; ``container_config`` covers each with a tmpfs)."""

    pulled: bool
    volumes: tuple[str, ...]


def _present(info: dict[str, Any], pulled: bool) -> PresentImage:
    volumes = (info.get("Config") or {}).get("Volumes") or {}
    return PresentImage(pulled, tuple(sorted(str(path) for path in volumes)))


async def ensure_image(docker: aiodocker.Docker, image: str, progress: ProgressHandler | None = None,
                       *, stall_timeout: float = PULL_STALL_TIMEOUT, pull: bool = True,
                       registries: RegistryPolicy | None = None) -> PresentImage:
    """Returns ``image`` once present: as it was, or after pulling it (its progress handed to
    ``progress`` and logged). Raises KernelStartError when it is neither present nor pullable
    (nor, with ``pull`` False, present; nor from one of ``registries``, default Docker Hub's: the engine
    is asked nothing), or when the pull makes no progress for ``stall_timeout`` seconds."""
    try:
        return _present(await docker.images.inspect(image), pulled=False)
    except DockerError as exc:
        if exc.status != 404:
            raise
    if not pull:
        raise KernelStartError(f"image {image!r} not found on this agent, and pulling is off (BERTH_IMAGE_PULL=never)")
    registries = registries or RegistryPolicy()
    if not registries.allows(image):
        raise KernelStartError(registries.refusal(image))
    log.info("pulling image %s", image)
    started = time.monotonic()
    pull = PullProgress(image)
    try:
        await _pull(docker, pull, progress, stall_timeout)
        info = await docker.images.inspect(image)
    except DockerError as exc:
        if exc.status == ENGINE_UNREACHABLE:  # not the image's fault: the start is tried again
            raise
        raise KernelStartError(f"image {image!r} not found and could not be pulled: {exc.message}") from exc
    summary = pull.summary(time.monotonic() - started)
    log.info("%s", summary)
    if progress is not None:
        await progress(summary)
    return _present(info, pulled=True)


async def _pull(docker: aiodocker.Docker, pull: PullProgress, progress: ProgressHandler | None,
                stall_timeout: float) -> None:
    """Runs the pull to its end, feeding ``pull`` and ``progress`` at every step."""
    last_logged = 0.0
    steps = docker.images.pull(pull.image, stream=True)
    async with contextlib.aclosing(steps):
        while True:
            try:
                async with asyncio.timeout(stall_timeout):
                    step = await anext(steps)
            except StopAsyncIteration:
                return
            except TimeoutError as exc:
                raise KernelStartError(f"pulling image {pull.image!r} made no progress for {stall_timeout:.0f} s "
                                       f"(last: {pull.line()})") from exc
            if "error" in step:
                raise DockerError(500, str(step.get("error")))
            pull.step(step)
            if progress is not None:
                await progress(pull.line())
            if time.monotonic() - last_logged >= PROGRESS_EVERY:
                last_logged = time.monotonic()
                log.info("%s", pull.line())

