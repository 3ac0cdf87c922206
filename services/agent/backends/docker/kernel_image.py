"""The offline Python kernel image (``berth/python:<tag>``): present, imported, or built.

``ensure_kernel_image`` returns at once when the tag is present; else it imports the cached
root filesystem (``rootfs.py``: ``<cache>/kernel-rootfs-<suite>-<arch>-r<recipe>.tar``), building that
first with debootstrap when it is not cached (root and debootstrap needed; about a minute),
with ``CMD ["python3"]``, ``LANG=C.UTF-8`` and the label ``berth.rootfs=<recipe>``. A present image
that an older Berth imported (an older recipe: ``stale``) is replaced the same way, or kept, and said,
where it cannot be built. No registry is ever asked for ``berth/python``
(a name on Docker Hub could be anyone's). ``berth up`` calls it for the default image;
``ops/images/build-python-image`` runs ``main`` (``python -m services.agent.backends.docker.kernel_image``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import aiodocker
import msgspec
from aiodocker.exceptions import DockerError
from yarl import URL

from services.agent.backends.docker.probe import docker_problem, no_docker_message
from services.agent.backends.docker.rootfs import (
    ROOTFS_RECIPE,
    ImageBuildError,
    Say,
    build_rootfs,
    cannot_build,
    debian_suite,
    rootfs_tarball,
)
from services.common.settings import DEFAULT_IMAGE, Settings

__all__ = [
    "IMAGE_CHANGES",
    "KERNEL_REPOSITORY",
    "ImageBuildError",
    "Prepared",
    "buildable",
    "ensure_kernel_image",
    "image_present",
    "import_rootfs",
    "main",
    "split_tag",
    "stale",
]

KERNEL_REPOSITORY = "berth/python"
RECIPE_LABEL = "berth.rootfs"
IMAGE_CHANGES = ('CMD ["python3"]', "ENV LANG=C.UTF-8", f"LABEL {RECIPE_LABEL}={ROOTFS_RECIPE}")
"""Dockerfile instructions applied on import."""
IMPORTED = "Imported from -"
"""The comment Docker gives an image imported from a request's body, as ``import_rootfs`` does."""


class Prepared(msgspec.Struct, frozen=True, kw_only=True):
    """How the kernel image came to be present: ``present`` (nothing done), ``imported`` (from
    the cached root filesystem) or ``built`` (debootstrap, then imported), and in how long."""

    tag: str
    how: str
    seconds: float
    tarball: Path | None = None


def split_tag(image: str) -> tuple[str, str]:
    """Returns (repository, tag) of ``image`` (tag ``latest`` when it names none); a registry's
    port is part of the repository."""
    repository, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return image, "latest"
    return repository, tag


def buildable(image: str) -> bool:
    """Returns True when ``image`` is the offline kernel image, which is built, never pulled."""
    return split_tag(image)[0] == KERNEL_REPOSITORY


async def stale(docker: aiodocker.Docker, image: str) -> str | None:
    """Returns why ``image`` (present) is an older kernel image, one that an older Berth imported from an
    older recipe of the root filesystem; None when it is current, or not one of ours (built otherwise)."""
    return _stale(image, await docker.images.inspect(image))


def _stale(image: str, info: dict) -> str | None:
    """``stale`` on what the engine said of ``image`` (its inspection)."""
    recipe = ((info.get("Config") or {}).get("Labels") or {}).get(RECIPE_LABEL) or "1"
    if not buildable(image) or info.get("Comment") != IMPORTED or recipe == str(ROOTFS_RECIPE):
        return None
    return (f"{image} was imported from the kernel root filesystem's recipe {recipe}, "
            f"now {ROOTFS_RECIPE} (`python` added)")


async def _inspected(docker: aiodocker.Docker, image: str) -> dict | None:
    """Returns the engine's inspection of ``image``, None when it has no such image."""
    try:
        return await docker.images.inspect(image)
    except DockerError as exc:
        if exc.status == 404:
            return None
        raise


async def image_present(docker: aiodocker.Docker, image: str) -> bool:
    """Returns True when the engine has ``image``."""
    return await _inspected(docker, image) is not None


async def import_rootfs(docker: aiodocker.Docker, tarball: Path, image: str) -> None:
    """Imports ``tarball`` as ``image`` (``docker import`` with IMAGE_CHANGES) through the
    engine's API; raises ImageBuildError with the engine's message when it refuses."""
    repository, tag = split_tag(image)
    query = [("fromSrc", "-"), ("repo", repository), ("tag", tag), *(("changes", c) for c in IMAGE_CHANGES)]
    try:
        with open(tarball, "rb") as body:
            async with docker._query(URL("images/create").with_query(query), "POST", data=body, timeout=None,
                                     headers={"Content-Type": "application/x-tar"}) as response:
                reply = await response.text()
    except DockerError as exc:
        raise ImageBuildError(f"Docker refused to import {tarball} as {image}: {exc.message}") from exc
    for line in reply.splitlines():
        if line.strip() and "error" in (message := json.loads(line)):
            raise ImageBuildError(f"Docker refused to import {tarball} as {image}: {message['error']}")


async def ensure_kernel_image(docker: aiodocker.Docker, image: str, *, cache_dir: Path, say: Say = print,
                              force: bool = False, suite: str | None = None, mirror: str | None = None) -> Prepared:
    """Makes ``image`` present: as it is, imported from the cached root filesystem, or built
    (``force``: built again from scratch, cache included). ``say`` gets the progress. Raises
    ImageBuildError saying why and what to do when it cannot."""
    started = time.monotonic()
    suite = suite or debian_suite()
    tarball = rootfs_tarball(cache_dir, suite)
    info = None if force else await _inspected(docker, image)
    if info is not None:  # one inspection: present, and whether an older Berth imported it
        older = _stale(image, info)
        if older is None:
            return Prepared(tag=image, how="present", seconds=0.0)
        if not tarball.exists() and (why := cannot_build()) is not None:
            say(f"{older}; keeping it: {why} (run `sudo {_script()} {image}` once to replace it)")
            return Prepared(tag=image, how="present", seconds=0.0)
        say(f"{older}; replacing it")
    how = "imported"
    if force or not tarball.exists():
        why = cannot_build()
        if why is not None:
            raise ImageBuildError(
                f"{why}; build it once with `sudo {_script()} {image}` (the root filesystem is then cached "
                f"in {cache_dir} for the next times), or set BERTH_DEFAULT_IMAGE to an image you have")
        await build_rootfs(tarball, suite=suite, mirror=mirror, say=say)
        how = "built"
    say(f"importing {tarball} ({tarball.stat().st_size / 1e6:.0f} MB) into Docker as {image}")
    await import_rootfs(docker, tarball, image)
    if not await image_present(docker, image):
        raise ImageBuildError(f"Docker imported {tarball} but has no image {image}")
    return Prepared(tag=image, how=how, seconds=time.monotonic() - started, tarball=tarball)


def _script() -> str:
    return str(Path(__file__).resolve().parents[4] / "ops" / "images" / "build-python-image")


async def _build(image: str, force: bool, cache_dir: Path, say: Say) -> int:
    problem = docker_problem()
    if problem is not None:
        say(no_docker_message(problem))
        return 1
    docker = aiodocker.Docker()
    try:
        prepared = await ensure_kernel_image(docker, image, cache_dir=cache_dir, say=say, force=force)
        size = int((await docker.images.inspect(image)).get("Size") or 0)
    except ImageBuildError as exc:
        say(f"cannot build {image}: {exc}")
        return 1
    finally:
        await docker.close()
    if prepared.how == "present":
        say(f"{image} already present (use --force to rebuild)")
    else:
        say(f"done: {image} {prepared.how} in {prepared.seconds:.0f} s ({size / 1e6:.0f} MB)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``build-python-image [--force] [TAG]``: makes the kernel image present; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="build-python-image",
        description="Builds the offline Python kernel image (Debian minbase + python3, debootstrap + docker import; "
                    "root needed unless the root filesystem is cached) unless it is present.")
    parser.add_argument("tag", nargs="?", default=DEFAULT_IMAGE, help=f"image tag (default {DEFAULT_IMAGE})")
    parser.add_argument("--force", action="store_true", help="build again from scratch, cached root filesystem included")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(f"build-python-image: {line}", file=sys.stderr, flush=True)

    return asyncio.run(_build(args.tag, args.force, Settings.from_env().cache_dir, say))


if __name__ == "__main__":
    sys.exit(main())
