"""Code in a kernel of the process backend nests directories 3,000 levels deep in its working directory, with a
link to a directory outside at the bottom, and ends: a week later the agent's sweep removes its directory (and
that of another kernel ended with it), the link's target untouched. Before, ``shutil.rmtree`` raised
RecursionError out of the sweep (the reconciliation logged "reconciliation failed"), and neither directory was
looked at again until the agent restarted."""

from __future__ import annotations

import os
from pathlib import Path

from services.agent.backends.process import ProcessBackend
from tests.integration.test_process_backend import launch, run
from tests.support.deep_trees import deep_tmp
from tests.support.kernel_dirs import age

__all__ = ["deep_tmp"]  # a fixture of the tests

DEEP = 3_000

NEST = """
import os
fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
for _ in range({depth}):
    os.mkdir("d", dir_fd=fd)
    child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    os.close(fd)
    fd = child
os.symlink({outside!r}, "out", dir_fd=fd)
os.close(fd)
print("nested")
"""


async def test_the_sweep_removes_a_kernel_directory_nested_3000_deep_following_no_link(deep_tmp: Path) -> None:
    outside = deep_tmp / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    backend = ProcessBackend(deep_tmp / "data", grace=2.0)
    try:
        await backend.create(launch("k-deep"))
        await backend.create(launch("k-other"))
        socket = backend.runner_socket("k-deep")
        assert socket is not None
        assert await run(socket, NEST.format(depth=DEEP, outside=str(outside))) == ("nested\n", 0)
        for kernel_id in ("k-deep", "k-other"):
            await backend.destroy(kernel_id)
            age(backend.kernel_dir(kernel_id), 8)
        assert sorted(await backend.sweep()) == ["k-deep", "k-other"]
        assert not os.path.lexists(backend.kernel_dir("k-deep"))
        assert not os.path.lexists(backend.kernel_dir("k-other"))
        assert (outside / "precious").read_text() == "keep me"
    finally:
        for kernel_id in list(await backend.list_running()):
            await backend.destroy(kernel_id)
        await backend.close()
