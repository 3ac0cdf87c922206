"""Storage folders in a kernel, on the real Docker engine with the real runner: a folder mounted
``rw`` takes a file the kernel writes (it is on the volume's directory on the host), one mounted
``ro`` is readable and a write fails with EROFS; the volume is mapped by the agent's own setting, so
a mount naming an unknown volume, or a folder whose directory is missing or a link, fails the start
with a reason naming it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from contracts.mounts import MountSpec
from services.agent.backends.base import KernelStartError
from services.agent.backends.docker import DockerBackend
from services.agent.backends.docker.backend import DEFAULT_RUNNER_DIR
from tests.support.docker_backend import agent_id, launch, release_io_mounts, remove_agent_containers
from tests.support.folders import folder_directory, volume
from tests.support.images import kernel_image
from tests.support.runner_calls import WRITE_ATTEMPT, run_code

__all__ = ["agent_id", "kernel_image", "volume"]

pytestmark = pytest.mark.docker

MIB = 1024**2

ATTEMPT = WRITE_ATTEMPT + """
print(attempt({path!r}, 'from the kernel'))
print(open({read!r}).read())
"""


@pytest.fixture
async def backend(agent_id: str, tmp_path: Path, volume: Path) -> AsyncIterator[DockerBackend]:
    instance = DockerBackend(agent_id, tmp_path / "data", grace=2, runner_dir=DEFAULT_RUNNER_DIR, pull="never",
                             scratch="16m", tmp="8m", volumes={"local": volume})
    try:
        yield instance
    finally:
        await instance.close()
        await remove_agent_containers(agent_id)
        release_io_mounts(tmp_path / "data")


def folder(volume: Path, content: str) -> str:
    """Creates a folder directory with ``readme.txt``; returns its id."""
    folder_id = f"vfolder_{uuid.uuid4().hex}"
    folder_directory(volume, folder_id, {"readme.txt": content})
    return folder_id


def mount(folder_id: str, target: str, permission: str, volume: str = "local") -> MountSpec:
    return MountSpec(folder_id=folder_id, name="data", volume=volume, target=target, permission=permission)  # type: ignore[arg-type]


async def test_a_file_written_in_an_rw_mount_is_on_the_volume(backend: DockerBackend, volume: Path,
                                                              kernel_image: str) -> None:
    folder_id = folder(volume, "hello")
    request = launch(kernel_image, mem=256 * MIB, mounts=[mount(folder_id, "/home/work/data", "rw")])
    await backend.create(request)

    out, code = await run_code(backend.runner_socket(request.kernel.kernel_id),
                               ATTEMPT.format(path="/home/work/data/result.txt", read="/home/work/data/readme.txt"))

    assert (code, out.splitlines()) == (0, ["ok", "hello"])
    assert (volume / "folders" / folder_id / "result.txt").read_text() == "from the kernel"


async def test_an_ro_mount_is_readable_and_a_write_fails_with_erofs(backend: DockerBackend, volume: Path,
                                                                    kernel_image: str) -> None:
    folder_id = folder(volume, "keep me")
    request = launch(kernel_image, mem=256 * MIB, mounts=[mount(folder_id, "/home/work/ref/data", "ro")])
    await backend.create(request)
    socket_path = backend.runner_socket(request.kernel.kernel_id)

    out, code = await run_code(socket_path, ATTEMPT.format(path="/home/work/ref/data/readme.txt",
                                                           read="/home/work/ref/data/readme.txt"))
    created, _ = await run_code(socket_path, ATTEMPT.format(path="/home/work/ref/data/new.txt",
                                                            read="/home/work/ref/data/readme.txt"))

    assert (code, out.splitlines()) == (0, ["EROFS", "keep me"])
    assert created.splitlines()[0] == "EROFS"
    assert sorted(p.name for p in (volume / "folders" / folder_id).iterdir()) == ["readme.txt"]
    assert (volume / "folders" / folder_id / "readme.txt").read_text() == "keep me"


@pytest.mark.parametrize("case, fragment", [
    ("unknown volume", "volume 'elsewhere' is not on this node (BERTH_STORAGE_VOLUMES has: local)"),
    ("missing folder", "is missing on volume local"),
    ("link", "is not a directory (a link?)"),
    ("bad id", "invalid folder id"),
    ("bad target", "must be a path under /home/work"),
])
async def test_a_mount_that_cannot_be_honoured_fails_the_start_naming_it(
    backend: DockerBackend, volume: Path, tmp_path: Path, kernel_image: str, case: str, fragment: str
) -> None:
    folder_id = f"vfolder_{uuid.uuid4().hex}"
    spec = mount(folder_id, "/home/work/data", "rw")
    if case == "unknown volume":
        folder(volume, "x")
        spec = mount(folder_id, "/home/work/data", "rw", volume="elsewhere")
    elif case == "link":
        (tmp_path / "host-secret").mkdir()
        (volume / "folders" / folder_id).symlink_to(tmp_path / "host-secret")
    elif case == "bad id":
        spec = mount("../../etc", "/home/work/data", "rw")
    elif case == "bad target":
        spec = mount(folder(volume, "x"), "/etc", "rw")
    request = launch(kernel_image, mem=256 * MIB, mounts=[spec])

    with pytest.raises(KernelStartError) as refused:
        await backend.create(request)

    assert fragment in str(refused.value)
    assert await backend.list_running() == {}
