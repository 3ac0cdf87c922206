"""Folders in the process backend (no isolation): each mount is a link at its target under the kernel's
``work/`` (``/home/work``), from the volume roots the agent was given; a missing folder fails the start."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from contracts.agent import KernelAssigned
from contracts.envelope import Metadata, utc_now
from contracts.mounts import MountSpec
from services.agent.backends.base import KernelLaunch, KernelStartError
from services.agent.backends.process import ProcessBackend
from tests.integration.test_process_backend import run


def launch(mounts: list[MountSpec]) -> KernelLaunch:
    kernel = KernelAssigned(
        event_id=uuid.uuid4(), originator_id="local", originator_version=1, timestamp=utc_now(),
        metadata=Metadata(actor="test", correlation_id="c"), kernel_id="k1", session_id="s1",
        image="berth/python:latest", slots={"cpu": Decimal(1)}, mounts=mounts,
    )
    return KernelLaunch(kernel=kernel, env={"BERTH_KERNEL_ID": "k1", "BERTH_SESSION_ID": "s1"})


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[ProcessBackend]:
    backend = ProcessBackend(tmp_path / "data", grace=2.0, volumes={"local": tmp_path / "volume"})
    yield backend
    for kernel_id in list(await backend.list_running()):
        await backend.destroy(kernel_id)
    await backend.close()


async def test_a_folder_is_linked_at_its_target(backend: ProcessBackend, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    folder_id = f"vfolder_{uuid.uuid4().hex}"
    (tmp_path / "volume" / "folders" / folder_id).mkdir(parents=True)
    mount = MountSpec(folder_id=folder_id, name="data", volume="local", target="/home/work/in/data", permission="rw")
    with caplog.at_level(logging.WARNING):
        await backend.create(launch([mount, msgspec.structs.replace(mount, target="/home/work/ref", permission="ro")]))

    out, code = await run(backend.runner_socket("k1"), "open('in/data/out.txt', 'w').write('hi'); print(open('ref/out.txt').read())")

    assert (out, code) == ("hi\n", 0)
    assert (tmp_path / "volume" / "folders" / folder_id / "out.txt").read_text() == "hi"
    assert any("WITHOUT read-only protection" in r.message for r in caplog.records)


async def test_a_missing_folder_fails_the_start(backend: ProcessBackend) -> None:
    mount = MountSpec(folder_id=f"vfolder_{uuid.uuid4().hex}", name="data", volume="local", target="/home/work/data")
    with pytest.raises(KernelStartError, match="folder data .* is missing on volume local"):
        await backend.create(launch([mount]))
    assert await backend.list_running() == {}
