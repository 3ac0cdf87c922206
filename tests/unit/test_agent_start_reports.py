"""What the agent reports while it starts a kernel (no NATS, no Docker): throttled progress lines,
an image pull summed over its layers, and the cause of every failed start."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from aiodocker.exceptions import DockerError

from contracts.agent import KernelAssigned
from contracts.envelope import Metadata
from contracts.reports import KernelExitedReport, KernelProgressReport, Report
from contracts.status import Reason
from services.agent.backends.base import KernelLaunch, KernelStartError, ProgressHandler
from services.agent.backends.docker.images import PullProgress, ensure_image, human_bytes
from services.agent.kernels import KernelLifecycle
from services.agent.progress import ProgressReports
from services.agent.backends.simulated import SimulatedBackend
from tests.support.reports import RecordingReporter

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
MB = 1_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_progress_is_sent_at_most_every_interval_and_the_last_line_on_flush() -> None:
    reports, clock = RecordingReporter(), Clock()
    progress = ProgressReports(reports, "k1", "s1", interval=2.0, monotonic=clock, clock=lambda: NOW)  # type: ignore[arg-type]
    await progress("one")
    await progress("two")
    clock.now += 1.0
    await progress("three")
    clock.now += 1.5
    await progress("four")
    await progress("five")
    await progress.flush()
    await progress.flush()
    assert [(msg_id, r.detail) for msg_id, r in reports.sent] == [  # type: ignore[attr-defined]
        ("a1:k1:kernel_progress:1", "one"), ("a1:k1:kernel_progress:2", "four"), ("a1:k1:kernel_progress:3", "five")]
    assert all(isinstance(r, KernelProgressReport) and r.session_id == "s1" for _, r in reports.sent)


async def test_progress_lines_are_clipped_and_a_failing_send_does_not_fail_the_start() -> None:
    class Broken(RecordingReporter):
        async def send(self, report: Report, msg_id: str) -> None:
            raise ConnectionError("nats is down")

    await ProgressReports(Broken(), "k1", "s1")("x" * 10_000)  # type: ignore[arg-type]
    reports = RecordingReporter()
    await ProgressReports(reports, "k1", "s1")("x" * 10_000)  # type: ignore[arg-type]
    assert len(reports.sent[0][1].detail) == 200  # type: ignore[attr-defined]


def test_a_pull_is_summed_over_its_layers() -> None:
    pull = PullProgress("python:3.12")
    assert pull.line() == "pulling python:3.12: waiting for the registry"
    for step in (
        {"status": "Pulling from library/python", "id": "3.12"},
        {"status": "Pulling fs layer", "id": "l1"},
        {"status": "Pulling fs layer", "id": "l2"},
        {"status": "Already exists", "id": "l3"},
        {"status": "Downloading", "id": "l1", "progressDetail": {"current": 5 * MB, "total": 20 * MB}},
        {"status": "Downloading", "id": "l2", "progressDetail": {"current": 1 * MB, "total": 2 * MB}},
    ):
        pull.step(step)
    assert pull.line() == "pulling python:3.12: 1/3 layers, 6.0 MB of 22.0 MB"
    for step in ({"status": "Download complete", "id": "l2"}, {"status": "Pull complete", "id": "l2"},
                 {"status": "Extracting", "id": "l1", "progressDetail": {"current": 1, "total": 9}},
                 {"status": "Pull complete", "id": "l1"}, {"status": "Digest: sha256:abc"}):
        pull.step(step)
    assert pull.line() == "pulling python:3.12: 3/3 layers, 22.0 MB of 22.0 MB"
    assert pull.summary(14.2) == "pulled python:3.12: 3 layers, 22.0 MB in 14 s"


@pytest.mark.parametrize(("amount", "text"), [(0, "0 B"), (999, "999 B"), (45_200_000, "45.2 MB"), (3 * 10**12, "3000.0 GB")])
def test_human_bytes(amount: int, text: str) -> None:
    assert human_bytes(amount) == text


class FakeImages:
    """``docker.images`` of an engine without the image, whose pull yields ``steps`` (a step that is
    an exception is raised; ``None`` stalls)."""

    def __init__(self, steps: list[Any]) -> None:
        self.steps = steps
        self.pulled = False

    async def inspect(self, image: str) -> dict:
        if not self.pulled:
            raise DockerError(404, f"No such image: {image}")
        return {"Id": "sha256:x"}

    def pull(self, image: str, *, stream: bool) -> AsyncIterator[dict]:
        async def steps() -> AsyncIterator[dict]:
            for step in self.steps:
                if step is None:
                    await asyncio.sleep(3600)
                if isinstance(step, Exception):
                    raise step
                yield step
            self.pulled = True

        return steps()


class FakeDocker:
    def __init__(self, steps: list[Any]) -> None:
        self.images = FakeImages(steps)


async def test_ensure_image_reports_the_pull_and_its_summary() -> None:
    lines: list[str] = []

    async def progress(line: str) -> None:
        lines.append(line)

    docker = FakeDocker([{"status": "Pulling fs layer", "id": "l1"},
                         {"status": "Downloading", "id": "l1", "progressDetail": {"current": MB, "total": 2 * MB}},
                         {"status": "Pull complete", "id": "l1"}])
    assert (await ensure_image(docker, "img:1", progress)).pulled is True  # type: ignore[arg-type]
    assert lines[:3] == ["pulling img:1: 0/1 layers", "pulling img:1: 0/1 layers, 1.0 MB of 2.0 MB",
                         "pulling img:1: 1/1 layers, 2.0 MB of 2.0 MB"]
    assert lines[3].startswith("pulled img:1: 1 layers, 2.0 MB in ")


@pytest.mark.parametrize(("steps", "message"), [
    ([DockerError(500, 'Get "https://registry-1.docker.io/v2/": no such host')], "no such host"),
    ([{"status": "Pulling fs layer", "id": "l1"}, {"error": "manifest unknown"}], "manifest unknown"),
    ([{"status": "Pulling fs layer", "id": "l1"}, None], "made no progress for 0 s"),
])
async def test_a_pull_that_fails_or_stalls_is_a_start_error_naming_the_image(steps: list[Any], message: str) -> None:
    with pytest.raises(KernelStartError, match=message) as failed:
        await ensure_image(FakeDocker(steps), "nope/image:1", stall_timeout=0.2)  # type: ignore[arg-type]
    assert "'nope/image:1'" in str(failed.value)


def assigned(kernel_id: str = "k1") -> KernelAssigned:
    return KernelAssigned(event_id=uuid.uuid4(), originator_id="a1", originator_version=2, timestamp=NOW,
                          metadata=Metadata(actor="test", correlation_id="c"), kernel_id=kernel_id, session_id="s1",
                          image="nope/image:1", slots={"cpu": Decimal(1), "mem": Decimal(2**30)})


class FailingBackend(SimulatedBackend):
    """Pulls with progress, then cannot start: with a KernelStartError, or another error."""

    def __init__(self, error: Exception) -> None:
        super().__init__(delay=0)
        self.error = error

    async def prepare(self, kernel: KernelAssigned, progress: ProgressHandler | None = None) -> None:
        assert progress is not None
        for done in range(3):
            await progress(f"pulling {kernel.image}: {done}/2 layers")

    async def create(self, launch: KernelLaunch) -> str:
        raise self.error


async def test_a_start_error_is_reported_with_its_cause_after_the_progress() -> None:
    reports = RecordingReporter()
    lifecycle = KernelLifecycle(FailingBackend(KernelStartError("image 'nope/image:1' not found")), reports)  # type: ignore[arg-type]
    await lifecycle.handle(assigned())
    assert reports.kinds() == ["kernel_pulling", "kernel_progress", "kernel_progress", "kernel_creating", "kernel_exited"]
    assert [r.detail for _, r in reports.sent[1:3]] == ["pulling nope/image:1: 0/2 layers",  # type: ignore[attr-defined]
                                                       "pulling nope/image:1: 2/2 layers"]
    exited = reports.sent[-1][1]
    assert isinstance(exited, KernelExitedReport)
    assert (exited.reason, exited.detail) == (Reason.FAILED_TO_START.value, "image 'nope/image:1' not found")


async def test_another_error_is_retried_and_reported_as_the_cause_on_the_last_attempt() -> None:
    reports = RecordingReporter()
    lifecycle = KernelLifecycle(FailingBackend(RuntimeError("engine busy")), reports)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        await lifecycle.handle(assigned())
    assert "kernel_exited" not in reports.kinds()
    await lifecycle.handle(assigned(), last_attempt=True)
    exited = reports.sent[-1][1]
    assert isinstance(exited, KernelExitedReport) and exited.reason == Reason.FAILED_TO_START.value
    assert exited.detail is not None and exited.detail.startswith("RuntimeError: engine busy")


class CreateWatch(SimulatedBackend):
    """Notes what had been reported, and which acks had come, when the container was created."""

    def __init__(self, reports: RecordingReporter) -> None:
        super().__init__(delay=0)
        self.reports = reports
        self.created = asyncio.Event()
        self.seen: list[str] = []
        self.acked_then = 0

    async def create(self, launch: KernelLaunch) -> str:
        self.seen = self.reports.kinds()
        self.acked_then = sum(ack.done() for ack in self.reports.acks)
        self.created.set()
        return await super().create(launch)


class AckCheckingReporter(RecordingReporter):
    """Fails the test's check when the running report goes out before every posted report was acked."""

    def __init__(self) -> None:
        super().__init__(hold_acks=True)
        self.running_before_acks = False

    async def send_kernel(self, report: Report, kernel_id: str) -> None:
        if report.type_name() == "kernel_running" and not all(ack.done() for ack in self.acks):
            self.running_before_acks = True
        await super().send_kernel(report, kernel_id)


async def test_pulling_and_creating_go_out_together_without_waiting_for_acks_and_running_after_them() -> None:
    # One round trip per report (pulling, creating) on the way to the container is gone; the
    # running report still follows their storage, so the controller sees them in order.
    reports = AckCheckingReporter()
    backend = CreateWatch(reports)
    start = asyncio.create_task(KernelLifecycle(backend, reports).handle(assigned()))  # type: ignore[arg-type]
    await asyncio.wait_for(backend.created.wait(), 10)
    assert backend.seen == ["kernel_pulling", "kernel_creating"]
    assert backend.acked_then == 0
    reports.release()
    await asyncio.wait_for(start, 10)
    assert reports.kinds() == ["kernel_pulling", "kernel_creating", "kernel_running"]
    assert not reports.running_before_acks


async def test_a_report_the_stream_did_not_store_fails_the_start_and_nothing_runs_reported() -> None:
    reports = AckCheckingReporter()
    backend = CreateWatch(reports)
    start = asyncio.create_task(KernelLifecycle(backend, reports).handle(assigned()))  # type: ignore[arg-type]
    await asyncio.wait_for(backend.created.wait(), 10)
    reports.acks[0].set_exception(ConnectionError("nats went away"))
    reports.release()
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(start, 10)  # the assignment is delivered again (same message ids)
    assert "kernel_running" not in reports.kinds()
