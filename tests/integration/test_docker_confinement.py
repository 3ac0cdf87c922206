"""What a kernel may touch, on the real Docker engine with the real runner: it runs as a non-root
user on a read-only root filesystem, writes only its bounded tmpfs ``/home/work`` and ``/tmp``, and
filling them, or its socket directory, ends in ENOSPC in the container while the host's disk is
untouched."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import pytest

from services.agent.backends.docker import DockerBackend
from services.agent.backends.docker.backend import DEFAULT_RUNNER_DIR
from services.agent.backends.docker.confinement import kernel_user
from services.agent.backends.docker.io_mount import IO_SIZE, mounted_under
from services.agent.runner_socket import open_runner
from tests.support.docker_backend import (
    Exits, agent_id, exec_output, launch, release_io_mounts, remove_agent_containers,
)
from tests.support.images import kernel_image
from tests.support.runner_calls import WRITE_ATTEMPT, ask, run_code
from tests.support.waiting import async_wait_for

__all__ = ["agent_id", "kernel_image"]

pytestmark = pytest.mark.docker

MIB = 1024**2
SCRATCH = 32 * MIB
TMP = 8 * MIB
FILL = 256
"""MiB a kernel tries to write: far past its scratch, and enough to see on the host's disk."""

CHECKS = WRITE_ATTEMPT + """
print(os.getuid(), os.getgid(), os.getcwd(), os.environ['HOME'])
for path in ('/x', '/usr/x', '/etc/passwd', '/home/work/x', '/tmp/x', '/opt/berth/runner/x', '/opt/berth/io/x'):
    print(path, attempt(path))
"""


@pytest.fixture
async def backend(agent_id: str, tmp_path: Path) -> AsyncIterator[DockerBackend]:
    """A Docker backend with the real runner and small scratch mounts; its containers removed after."""
    instance = DockerBackend(agent_id, tmp_path / "data", grace=2, runner_dir=DEFAULT_RUNNER_DIR, pull="never",
                             scratch=f"{SCRATCH // MIB}m", tmp=f"{TMP // MIB}m")
    try:
        yield instance
    finally:
        await instance.close()
        await remove_agent_containers(agent_id)
        release_io_mounts(tmp_path / "data")


def _usage(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


async def test_a_kernel_is_not_root_and_writes_only_its_scratch(backend: DockerBackend, kernel_image: str) -> None:
    request = launch(kernel_image, mem=512 * MIB)
    await backend.create(request)
    socket_path = backend.runner_socket(request.kernel.kernel_id)
    assert socket_path is not None

    out, code = await run_code(socket_path, CHECKS)
    assert code == 0, out
    lines = out.splitlines()
    user = kernel_user("auto")  # 1000:1000 under a root agent (CI), else the agent's own uid
    assert user.uid != 0 and lines[0] == f"{user.uid} {user.gid} /home/work /home/work"
    assert dict(line.split() for line in lines[1:]) == {
        "/x": "EROFS", "/usr/x": "EROFS", "/etc/passwd": "EROFS",
        "/home/work/x": "ok", "/tmp/x": "ok",
        "/opt/berth/runner/x": "EROFS",
        # The agent's once the runner listens; a non-root agent's kernel shares its uid and owns io/.
        "/opt/berth/io/x": "EACCES" if os.getuid() == 0 else "ok",
    }


async def test_filling_the_scratch_ends_in_enospc_and_leaves_the_host_disk_alone(backend: DockerBackend,
                                                                                  kernel_image: str) -> None:
    request = launch(kernel_image, mem=512 * MIB)
    container_id = await backend.create(request)
    kernel_dir = backend.data_dir / "kernels" / request.kernel.kernel_id
    free_before = shutil.disk_usage(backend.data_dir).free

    docker = aiodocker.Docker()
    try:
        work = await exec_output(docker, container_id, "dd", "if=/dev/zero", "of=/home/work/fill", "bs=1M",
                                 f"count={FILL}")
        tmp = await exec_output(docker, container_id, "dd", "if=/dev/zero", "of=/tmp/fill", "bs=1M", f"count={FILL}")
        sizes = await exec_output(docker, container_id, "stat", "-c", "%s", "/home/work/fill", "/tmp/fill")
        mounts = await exec_output(docker, container_id, "cat", "/proc/mounts")
    finally:
        await docker.close()

    assert "No space left on device" in work and "No space left on device" in tmp, (work, tmp)
    assert [int(size) for size in sizes.split()] == [SCRATCH, TMP]
    assert f"tmpfs /home/work tmpfs rw,nosuid,nodev,relatime,size={SCRATCH // 1024}k" in mounts, mounts
    assert _usage(kernel_dir) < MIB, "the kernel's files reached the host"
    # Other work on this machine may write meanwhile: bounded well under what dd tried to write.
    assert free_before - shutil.disk_usage(backend.data_dir).free < FILL * MIB // 2
    assert await run_code(backend.runner_socket(request.kernel.kernel_id), "print('still here')") == ("still here\n", 0)


async def test_a_batch_kernel_cannot_write_the_agents_io_directory(backend: DockerBackend, kernel_image: str) -> None:
    exits = Exits()
    exits.start(backend)
    try:
        request = launch(kernel_image, startup_command="echo x > /opt/berth/io/planted")
        kernel_id = request.kernel.kernel_id
        await backend.create(request)
        await async_wait_for(lambda: kernel_id in exits.reports, timeout=30, message="the batch kernel never exited")
    finally:
        await exits.stop()
    assert exits.reports[kernel_id][0] != 0
    assert "cannot create /opt/berth/io/planted" in await backend.logs(kernel_id)  # not its, and read-only
    assert not (backend.data_dir / "kernels" / kernel_id / "io" / "planted").exists()


GREEDY_RUNNER = """\
import errno, os, signal, socket, sys
path = sys.argv[sys.argv.index("--socket") + 1]
fill = open(os.path.join(os.path.dirname(path), "fill"), "wb", buffering=0)

def write(mib):
    try:
        for _ in range(mib * 16):
            fill.write(bytes(65536))
        return "ok"
    except OSError as exc:
        return errno.errorcode[exc.errno]

print("while starting:", write(%(fill)d), flush=True)
server = socket.socket(socket.AF_UNIX)
server.bind(path + ".new")  # listening before the socket is where the agent looks, as the real runner does
server.listen()
os.rename(path + ".new", path)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
conn, _ = server.accept()  # the agent took io/ back before anyone connects
print("after the agent took io/ back:", write(%(fill)d), flush=True)
conn.sendall(b"done\\n")
signal.pause()
"""
"""A runner (standing for a tenant's image) that fills its socket directory while it starts, and
through the file it keeps open once the agent took the directory back."""


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root agent mounts a tmpfs on io/ (README: a non-root agent)")
async def test_a_kernel_cannot_fill_the_host_disk_through_its_socket_directory(agent_id: str, tmp_path: Path,
                                                                               kernel_image: str) -> None:
    runner = tmp_path / "greedy"
    runner.mkdir()
    (runner / "berth_runner.py").write_text(GREEDY_RUNNER % {"fill": FILL})
    data = tmp_path / "data"
    backend = DockerBackend(agent_id, data, grace=2, runner_dir=runner, pull="never")
    try:
        request = launch(kernel_image, mem=512 * MIB)
        kernel_id = request.kernel.kernel_id
        free_before = shutil.disk_usage(data.parent).free
        await backend.create(request)
        reader, writer = await open_runner(backend.runner_socket(kernel_id))
        assert await asyncio.wait_for(reader.readline(), 30) == b"done\n"
        writer.close()
        log = await backend.logs(kernel_id)
        io = data / "kernels" / kernel_id / "io"
        assert "while starting: ENOSPC" in log and "after the agent took io/ back: ENOSPC" in log, log
        assert (io / "fill").stat().st_size <= IO_SIZE
        assert free_before - shutil.disk_usage(data.parent).free < FILL * MIB // 2
        assert io in mounted_under(data)
        await backend.destroy(kernel_id)
        assert mounted_under(data) == [], "the io/ tmpfs outlived its container"
    finally:
        await backend.close()
        await remove_agent_containers(agent_id)
        release_io_mounts(data)


async def test_a_run_past_the_memory_limit_is_told_so_and_the_kernel_goes_on(backend: DockerBackend,
                                                                              kernel_image: str) -> None:
    request = launch(kernel_image, mem=96 * MIB)
    await backend.create(request)
    socket_path = backend.runner_socket(request.kernel.kernel_id)
    assert socket_path is not None

    answers = await ask(socket_path, {"op": "run", "run_id": "hog", "mode": "query",
                                      "code": "hog = bytearray(512 * 1024 * 1024)\nprint(len(hog))"},
                        until=lambda a: a.get("kind") == "done")
    stderr = "".join(a["data"] for a in answers if a.get("kind") == "stderr")
    assert answers[-1]["exit_code"] == 137, answers
    assert "berth: the Python worker was killed by SIGKILL; its variables are gone" in stderr
    assert "berth: out of memory: the kernel reached its memory limit (96 MiB) during this run" in stderr
    assert await run_code(socket_path, "print('still here')") == ("still here\n", 0)
