"""What runs code under ``berth up``: the agent's backend, chosen once at start, and the default
kernel image, made present before the agent reports ready.

* ``docker`` and ``auto`` (the default) need a Docker engine. Without one, ``berth up`` refuses to
  start with one line saying why and how to get one: it never falls back to running code
  unisolated (an agent that cannot run code would only fail every session later, further from
  the cause). ``auto`` with an engine is ``docker``.
* ``process`` runs code unisolated, as this user on this host: said at start, in so many words.
* ``simulated`` runs nothing (tries of the API, tests, load tests).

With Docker, ``prepare_default_image`` makes the default image (``BERTH_DEFAULT_IMAGE``) present:
the offline ``berth/python`` image is imported from the cached root filesystem or built (progress
on the terminal, and how long it took); any other image is left to the agent, which pulls it the
first time a session uses it.
"""

from __future__ import annotations

import asyncio
import getpass
import os
from collections.abc import Callable

import aiodocker
import msgspec

from services.agent.capacity import AUTO, CapacityError, resolve_capacity
from services.agent.backends.docker import docker_problem, no_docker_message
from services.agent.backends.docker.kernel_image import ImageBuildError, buildable, ensure_kernel_image, image_present
from services.common.settings import Settings
from services.common.waiting import first_of

__all__ = ["StartRefused", "choose_backend", "describe_capacity", "prepare_default_image"]

Say = Callable[[str], None]
GIB = 1024**3


class StartRefused(Exception):
    """Raised when ``berth up`` must not start as configured; the message is one line for people."""


def choose_backend(settings: Settings, problem: Callable[[], str | None] = docker_problem) -> tuple[Settings, str | None]:
    """Returns the settings with the agent's backend decided (``auto`` → ``docker``) and a line
    to say about it, if any; raises StartRefused when Docker is wanted and no engine answers."""
    backend = settings.agent_backend
    if backend in ("auto", "docker"):
        why = problem()
        if why is not None:
            raise StartRefused(no_docker_message(why))
        return msgspec.structs.replace(settings, agent_backend="docker"), None
    if backend == "process":
        user = getpass.getuser()
        return settings, (
            f"process backend: code in sessions runs as user {user} (uid {os.getuid()}) directly on this host, "
            f"UNISOLATED: no container, no resource limits, images ignored; it can read and change whatever "
            f"{user} can. Use it only where you trust everyone who can create a session.")
    if backend == "simulated":
        return settings, "simulated backend: sessions run nothing (for trying the API, tests and load tests)"
    return settings, None  # an unknown backend: the agent names the ones it knows


def describe_capacity(settings: Settings) -> str:
    """Returns the local agent's capacity for people: the setting, or what ``auto`` detects."""
    if settings.agent_capacity.strip().lower() != AUTO:
        return settings.agent_capacity
    try:
        slots = resolve_capacity(AUTO, reserved_cpu=settings.agent_reserved_cpu, reserved_mem=settings.agent_reserved_mem)
    except CapacityError as exc:
        return f"auto ({exc})"
    return f"auto (cpu={slots['cpu']}, mem={slots['mem'] / GIB:.1f}g detected)"


async def prepare_default_image(settings: Settings, say: Say, stop: asyncio.Event) -> None:
    """Makes the default kernel image present (see the module's docstring); returns early when
    ``stop`` is set. A build that fails is said, not fatal: other images still work."""
    image = settings.default_image
    docker = aiodocker.Docker()
    try:
        if await image_present(docker, image):
            say(f"kernel image {image}: present")
            return
        if not buildable(image):
            say(f"kernel image {image} is not here yet: the agent pulls it when a session first uses it")
            return
        say(f"kernel image {image} is missing: making it now (a minute or two the first time, seconds once "
            f"its root filesystem is cached in {settings.cache_dir})")
        build = asyncio.create_task(
            ensure_kernel_image(docker, image, cache_dir=settings.cache_dir, say=lambda line: say(f"  {line}")),
            name="kernel-image")
        await first_of(build, stop)
        if not build.done():
            build.cancel()
            await asyncio.gather(build, return_exceptions=True)
            return
        prepared = build.result()
        say(f"kernel image {image} {prepared.how} in {prepared.seconds:.0f} s; the next starts reuse it")
    except ImageBuildError as exc:
        say(f"WARNING: cannot make the kernel image {image}: {exc}. Sessions of {image} fail to start until it exists.")
    finally:
        await docker.close()
