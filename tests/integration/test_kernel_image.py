"""The kernel image against a real Docker engine: imported from a cached root filesystem (a tiny
stand-in here, so no debootstrap runs), present the next time, refused imports said clearly, and
what `berth up` says while it prepares its default image. The full build is in
tests/e2e/test_first_run.py."""

from __future__ import annotations

import asyncio
import tarfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import pytest

from services.agent.backends.docker import kernel_image
from services.agent.backends.docker.kernel_image import ImageBuildError, ensure_kernel_image, import_rootfs, stale
from services.agent.backends.docker.rootfs import ROOTFS_RECIPE, rootfs_tarball
from services.common.settings import Settings
from services.supervisor.runtime import prepare_default_image

pytestmark = pytest.mark.docker


@pytest.fixture
async def docker() -> AsyncIterator[aiodocker.Docker]:
    client = aiodocker.Docker()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def tag(docker: aiodocker.Docker) -> AsyncIterator[str]:
    """Yields a fresh tag of the kernel repository, removed afterwards."""
    name = f"berth/python:test-{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        try:
            await docker.images.delete(name, force=True)
        except aiodocker.DockerError:
            pass


def cached_rootfs(cache: Path) -> Path:
    """Writes a tiny root filesystem where the cache keeps the real one; returns its path."""
    root = cache / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hello").write_text("hi\n")
    tarball = rootfs_tarball(cache, "bookworm")
    with tarfile.open(tarball, "w") as tar:
        tar.add(root, arcname=".")
    return tarball


async def test_a_cached_rootfs_is_imported_once_with_python3_as_its_command(
        docker: aiodocker.Docker, tag: str, tmp_path: Path) -> None:
    tarball = cached_rootfs(tmp_path)
    said: list[str] = []
    prepared = await ensure_kernel_image(docker, tag, cache_dir=tmp_path, say=said.append, suite="bookworm")
    assert (prepared.how, prepared.tarball) == ("imported", tarball)
    assert said == [f"importing {tarball} (0 MB) into Docker as {tag}"]
    config = (await docker.images.inspect(tag))["Config"]
    assert config["Cmd"] == ["python3"] and "LANG=C.UTF-8" in config["Env"]
    assert config["Labels"] == {"berth.rootfs": str(ROOTFS_RECIPE)}

    again = await ensure_kernel_image(docker, tag, cache_dir=tmp_path, say=said.append, suite="bookworm")
    assert again.how == "present" and len(said) == 1


OLDER_CHANGES = ('CMD ["python3"]', "ENV LANG=C.UTF-8")
"""What an older Berth imported its kernel image with (no recipe label: recipe 1, without `python`)."""


async def test_an_image_an_older_berth_imported_is_replaced_from_the_current_recipe(
        docker: aiodocker.Docker, tag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tarball = cached_rootfs(tmp_path)
    with monkeypatch.context() as older:
        older.setattr(kernel_image, "IMAGE_CHANGES", OLDER_CHANGES)
        await import_rootfs(docker, tarball, tag)
    assert await stale(docker, tag) == (f"{tag} was imported from the kernel root filesystem's recipe 1, "
                                        f"now {ROOTFS_RECIPE} (`python` added)")
    said: list[str] = []
    prepared = await ensure_kernel_image(docker, tag, cache_dir=tmp_path, say=said.append, suite="bookworm")
    assert prepared.how == "imported" and said[0].endswith("; replacing it")
    assert (await docker.images.inspect(tag))["Config"]["Labels"] == {"berth.rootfs": str(ROOTFS_RECIPE)}
    assert await stale(docker, tag) is None


async def test_an_older_image_that_cannot_be_replaced_here_is_kept_and_said(
        docker: aiodocker.Docker, tag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tarball = cached_rootfs(tmp_path / "elsewhere")
    with monkeypatch.context() as older:
        older.setattr(kernel_image, "IMAGE_CHANGES", OLDER_CHANGES)
        await import_rootfs(docker, tarball, tag)
    monkeypatch.setattr(kernel_image, "cannot_build", lambda: "building it needs root")
    said: list[str] = []
    prepared = await ensure_kernel_image(docker, tag, cache_dir=tmp_path, say=said.append, suite="bookworm")
    assert prepared.how == "present" and len(said) == 1
    assert said[0].startswith(f"{tag} was imported from the kernel root filesystem's recipe 1")
    assert "; keeping it: building it needs root (run `sudo " in said[0]


async def test_a_kernel_image_built_otherwise_is_never_replaced(docker: aiodocker.Docker, tag: str,
                                                                tmp_path: Path) -> None:
    tarball = cached_rootfs(tmp_path)
    source = f"{tag}-source"
    await import_rootfs(docker, tarball, source)
    container = await docker.containers.create({"Image": source, "Cmd": ["true"], "Labels": {}})
    try:  # a commit, as a Dockerfile's build would be: not an import of Berth's
        await container.commit(repository=tag.rpartition(":")[0], tag=tag.rpartition(":")[2],
                               changes='LABEL berth.rootfs=1')
    finally:
        await container.delete(force=True)
        await docker.images.delete(source, force=True)
    assert await stale(docker, tag) is None
    prepared = await ensure_kernel_image(docker, tag, cache_dir=tmp_path, say=print, suite="bookworm")
    assert prepared.how == "present"


async def test_an_import_the_engine_refuses_is_a_build_error(docker: aiodocker.Docker, tag: str, tmp_path: Path) -> None:
    garbage = tmp_path / "rootfs.tar"
    garbage.write_bytes(b"not a tar archive" * 100)
    with pytest.raises(ImageBuildError, match=f"Docker refused to import {garbage} as {tag}"):
        await import_rootfs(docker, garbage, tag)


async def test_berth_up_makes_its_default_image_and_says_how_long_it_took(tag: str, tmp_path: Path) -> None:
    cached_rootfs(tmp_path)
    said: list[str] = []
    settings = Settings(default_image=tag, cache_dir=tmp_path)
    await prepare_default_image(settings, said.append, asyncio.Event())
    assert said[0].startswith(f"kernel image {tag} is missing: making it now")
    assert said[-1].startswith(f"kernel image {tag} imported in ") and said[-1].endswith("the next starts reuse it")
    said.clear()
    await prepare_default_image(settings, said.append, asyncio.Event())
    assert said == [f"kernel image {tag}: present"]


async def test_berth_up_leaves_other_images_to_the_agent(tmp_path: Path) -> None:
    said: list[str] = []
    settings = Settings(default_image="does-not-exist/image:1", cache_dir=tmp_path)
    await prepare_default_image(settings, said.append, asyncio.Event())
    assert said == ["kernel image does-not-exist/image:1 is not here yet: the agent pulls it when a session first uses it"]


async def test_berth_up_goes_on_when_its_image_cannot_be_made_here(tag: str, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernel_image, "cannot_build", lambda: "building it needs root")
    said: list[str] = []
    await prepare_default_image(Settings(default_image=tag, cache_dir=tmp_path), said.append, asyncio.Event())
    assert said[-1].startswith(f"WARNING: cannot make the kernel image {tag}: building it needs root; build it once "
                               f"with `sudo ")
    assert said[-1].endswith(f"Sessions of {tag} fail to start until it exists.")
