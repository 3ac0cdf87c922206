"""An image's declared volumes (its Dockerfile's ``VOLUME``) never reach the host's disk: each is a tmpfs of the
kernel's bounded ``/tmp`` size, on the real Docker engine. Before, the engine made an anonymous volume under
/var/lib/docker for each, which a kernel filled without bound and which outlived its container."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiodocker
import pytest

from services.agent.backends.docker import DockerBackend
from services.agent.backends.docker.backend import DEFAULT_RUNNER_DIR
from tests.support.docker_backend import agent_id, cleaned_up, exec_output, launch
from tests.support.images import kernel_image

__all__ = ["agent_id", "kernel_image"]

pytestmark = pytest.mark.docker

MIB = 1024**2
TMP = 8 * MIB


@pytest.fixture
def volume_image(kernel_image: str) -> Iterator[str]:
    """The kernel image with ``VOLUME /data`` (built locally from it: nothing is pulled)."""
    tag = f"berth-test/volume:{uuid.uuid4().hex[:12]}"
    subprocess.run(["docker", "build", "-q", "-t", tag, "-"], input=f"FROM {kernel_image}\nVOLUME /data\n".encode(),
                   check=True, capture_output=True, timeout=300)
    try:
        yield tag
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], check=False, capture_output=True, timeout=120)


@pytest.fixture
async def backend(agent_id: str, tmp_path: Path) -> AsyncIterator[DockerBackend]:
    async with cleaned_up(DockerBackend(agent_id, tmp_path / "data", grace=2, runner_dir=DEFAULT_RUNNER_DIR,
                                        pull="never", tmp=f"{TMP // MIB}m")) as instance:
        yield instance


async def test_a_declared_volume_is_a_bounded_tmpfs_and_leaves_nothing_behind(backend: DockerBackend,
                                                                              volume_image: str) -> None:
    request = launch(volume_image, mem=512 * MIB)
    docker = aiodocker.Docker()
    try:
        volumes_before = {v["Name"] for v in (await docker.volumes.list()).get("Volumes") or []}
        container_id = await backend.create(request)
        container = await docker.containers.get(container_id)
        assert [m for m in container["Mounts"] if m["Type"] == "volume"] == [], "an anonymous volume was made"
        fill = await exec_output(docker, container_id, "dd", "if=/dev/zero", "of=/data/fill", "bs=1M", "count=64")
        size = await exec_output(docker, container_id, "stat", "-c", "%s", "/data/fill")
        assert "No space left on device" in fill and int(size) == TMP, (fill, size)
        await backend.destroy(request.kernel.kernel_id)
        volumes_after = {v["Name"] for v in (await docker.volumes.list()).get("Volumes") or []}
    finally:
        await docker.close()
    assert volumes_after <= volumes_before, "a volume outlived the kernel"
