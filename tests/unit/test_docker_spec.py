"""The pure translation of a kernel launch into a Docker create config, and exit reasons."""

from __future__ import annotations

import asyncio
import os
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from contracts.agent import KernelAssigned
from contracts.envelope import Metadata, utc_now
from services.agent.backends.base import KernelLaunch, KernelStartError
from services.agent.backends.docker.confinement import KernelUser, Scratch, kernel_user, scratch_sizes
from services.agent.backends.docker.exits import LIVE_RESTORE_OFF, exit_detail, exit_reason, warn_without_live_restore
from services.agent.backends.docker.spec import (
    KernelPaths,
    container_config,
    container_name,
    device_env,
    instance_of,
    kernel_command,
    limits,
    volume_mounts,
)

MIB = 1024**2


def _launch(slots: dict[str, Decimal], *, startup_command: str | None = None,
            env: dict[str, str] | None = None, devices: dict[str, list[str]] | None = None) -> KernelLaunch:
    kernel = KernelAssigned(
        event_id=uuid.uuid4(), originator_id="a1", originator_version=3, timestamp=utc_now(),
        metadata=Metadata(actor="t", correlation_id="c"), kernel_id="k1", session_id="s1",
        image="berth/python:latest", slots=slots, cluster_role="main", startup_command=startup_command,
    )
    return KernelLaunch(kernel=kernel, env=env if env is not None else {"BERTH_SESSION_ID": "s1"}, devices=devices or {})


WORK = KernelUser(1000, 1000)
SCRATCH = Scratch(work=1024 * MIB, tmp=256 * MIB)


def _config(launch: KernelLaunch, **kwargs: object) -> dict:
    paths = KernelPaths.of(Path("/data"), launch.kernel.kernel_id)
    options: dict = {"user": WORK, "scratch": SCRATCH, **kwargs}
    return container_config(launch, agent_id="a1", paths=paths, runner_dir=Path("/repo/runner"), **options)


@pytest.mark.parametrize(
    ("cpu", "nano"),
    [("0.5", 500_000_000), ("1", 1_000_000_000), ("2.25", 2_250_000_000), ("0.01", 10_000_000)],
)
def test_the_cpu_slot_becomes_a_cfs_quota(cpu: str, nano: int) -> None:
    assert limits({"cpu": Decimal(cpu)})["NanoCpus"] == nano


def test_memory_and_swap_are_the_mem_slot() -> None:
    assert limits({"mem": Decimal(256 * MIB)}) == {"Memory": 256 * MIB, "MemorySwap": 256 * MIB}


def test_missing_slots_set_no_limit() -> None:
    assert limits({}) == {}
    assert limits({"cpu": Decimal(0), "mem": Decimal(0)}) == {}


@pytest.mark.parametrize(
    ("slots", "message"),
    [({"mem": Decimal(MIB)}, "6 MiB"), ({"cpu": Decimal("0.001")}, "0.01"), ({"cpu": Decimal(-1)}, "negative")],
)
def test_limits_docker_cannot_honour_are_start_errors(slots: dict[str, Decimal], message: str) -> None:
    with pytest.raises(KernelStartError, match=message):
        limits(slots)


def test_the_container_is_isolated_and_limited() -> None:
    config = _config(_launch({"cpu": Decimal("0.5"), "mem": Decimal(256 * MIB)}))
    host = config["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["Privileged"] is False
    assert host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["PidsLimit"] == 1024
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == host["MemorySwap"] == 256 * MIB
    assert "CapAdd" not in host
    assert host["ReadonlyRootfs"] is True
    assert config["User"] == "1000:1000"


def test_the_scratch_is_tmpfs_bounded_by_the_setting_and_the_mem_slot() -> None:
    unbounded = _config(_launch({"cpu": Decimal(1)}))["HostConfig"]["Tmpfs"]
    assert unbounded == {
        "/home/work": f"rw,exec,nosuid,nodev,size={1024 * MIB},uid=1000,gid=1000,mode=0755",
        "/tmp": f"rw,exec,nosuid,nodev,size={256 * MIB},mode=1777",
    }
    # Tmpfs pages count against the memory limit: a full scratch must end in ENOSPC, not an OOM kill.
    small = _config(_launch({"mem": Decimal(256 * MIB)}))["HostConfig"]["Tmpfs"]
    assert f"size={128 * MIB}," in small["/home/work"] and f"size={64 * MIB}," in small["/tmp"]
    assert "/home/work" not in {m["Target"] for m in _config(_launch({}))["HostConfig"]["Mounts"]}


def test_the_kernel_user_is_never_root() -> None:
    assert kernel_user("auto", agent_uid=0, agent_gid=0) == KernelUser(1000, 1000)
    assert kernel_user("auto", agent_uid=1234, agent_gid=99) == KernelUser(1234, 99)
    assert kernel_user("2000:3000", agent_uid=0, agent_gid=0) == KernelUser(2000, 3000)
    assert kernel_user(" 1234:99 ", agent_uid=1234, agent_gid=99) == KernelUser(1234, 99)
    with pytest.raises(ValueError, match="never run as root"):
        kernel_user("0:1000", agent_uid=0, agent_gid=0)
    with pytest.raises(ValueError, match="never run as root"):
        kernel_user("1000:0", agent_uid=0, agent_gid=0)
    with pytest.raises(ValueError, match="'auto' or 'uid:gid'"):
        kernel_user("work", agent_uid=0, agent_gid=0)
    with pytest.raises(ValueError, match="cannot hand"):
        kernel_user("1000:1000", agent_uid=1234, agent_gid=99)


def test_scratch_sizes_are_checked() -> None:
    assert scratch_sizes("1g", "256MiB") == SCRATCH
    with pytest.raises(ValueError, match="BERTH_KERNEL_SCRATCH must be a size"):
        scratch_sizes("lots", "1m")
    with pytest.raises(ValueError, match="BERTH_KERNEL_TMP=512k is below the minimum"):
        scratch_sizes("1g", "512k")


def test_mounts_labels_command_and_environment() -> None:
    config = _config(_launch({"cpu": Decimal(1)}), user=KernelUser(1000, 1001))
    mounts = {m["Target"]: (m["Source"], m["ReadOnly"]) for m in config["HostConfig"]["Mounts"]}
    assert mounts == {
        "/opt/berth/runner": ("/repo/runner", True),
        "/opt/berth/io": ("/data/kernels/k1/io", False),
    }
    assert config["Labels"] == {
        "berth.kernel_id": "k1", "berth.session_id": "s1", "berth.agent_id": "a1",
        "berth.instance": instance_of(Path("/data/kernels")), "berth.cluster_role": "main", "berth.mode": "interactive",
    }
    assert config["Cmd"] == ["python3", "/opt/berth/runner/berth_runner.py", "--socket", "/opt/berth/io/runner.sock",
                             "--cgroup", "/sys/fs/cgroup"]
    assert config["WorkingDir"] == "/home/work"
    assert config["User"] == "1000:1001"
    assert "BERTH_SESSION_ID=s1" in config["Env"]
    assert container_name("k1") == "berth-k1"


def test_a_batch_kernel_runs_its_startup_command_through_the_shell() -> None:
    config = _config(_launch({}, startup_command="python3 train.py && echo done"))
    assert config["Cmd"] == ["/bin/sh", "-c", "python3 train.py && echo done"]
    assert config["Labels"]["berth.mode"] == "batch"
    # No runner, so no socket: the kernel's command may not write the agent's io directory.
    assert {m["Target"]: m["ReadOnly"] for m in config["HostConfig"]["Mounts"]}["/opt/berth/io"] is True
    assert kernel_command(None)[0] == "python3"


def test_devices_are_named_in_the_environment() -> None:
    assert device_env({"cuda.device": ["0", "2"], "cuda.shares": ["1"]}) == {
        "BERTH_DEVICES_CUDA_DEVICE": "0,2", "CUDA_VISIBLE_DEVICES": "0,2", "BERTH_DEVICES_CUDA_SHARES": "1",
    }
    config = _config(_launch({}, devices={"cuda.device": ["3"]}))
    assert "CUDA_VISIBLE_DEVICES=3" in config["Env"]


def test_the_launch_environment_wins_and_bad_names_are_refused() -> None:
    config = _config(_launch({}, env={"CUDA_VISIBLE_DEVICES": "7"}, devices={"cuda.device": ["3"]}))
    assert "CUDA_VISIBLE_DEVICES=7" in config["Env"]
    with pytest.raises(KernelStartError, match="environment variable"):
        _config(_launch({}, env={"BAD=NAME": "x"}))


def test_the_kernel_paths_live_under_the_data_dir() -> None:
    paths = KernelPaths.of(Path("/data"), "k1")
    assert paths.socket == Path("/data/kernels/k1/io/runner.sock")
    assert paths.log == Path("/data/kernels/k1/container.log")


@pytest.mark.parametrize(
    ("code", "oom", "batch", "reason"),
    [
        (137, True, False, "oom-killed"),
        (137, True, True, "oom-killed"),
        (0, False, True, "task-finished"),
        (0, False, False, "self-terminated"),
        (3, False, True, "task-failed"),
        (1, False, False, "task-failed"),
    ],
)
def test_exit_reasons(code: int, oom: bool, batch: bool, reason: str) -> None:
    assert exit_reason(code, oom_killed=oom, batch=batch) == reason


@pytest.mark.parametrize(
    ("code", "oom", "batch", "said"),
    [
        (143, False, False, "the kernel was ended by SIGTERM (exit 143), which Berth did not send"),
        (137, False, False, "the kernel was ended by SIGKILL (exit 137), which Berth did not send"),
        (143, False, True, "the command ended by SIGTERM (exit 143): its own doing, or a stop from outside Berth"),
        (137, True, False, None),  # the memory limit: the reason (oom-killed) says it
        (1, False, False, None),
        (3, False, True, None),
        (139, False, True, None),  # SIGSEGV: the program's own crash
        (None, False, False, None),
    ],
)
def test_an_exit_by_a_signal_berth_did_not_send_says_where_it_may_come_from(
        code: int | None, oom: bool, batch: bool, said: str | None) -> None:
    detail = exit_detail(code, oom_killed=oom, batch=batch)
    if said is None:
        assert detail is None
    else:
        assert detail is not None and detail.startswith(said), detail
        assert ("live-restore" in detail) is not batch


def test_the_probe_says_no_when_no_engine_answers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from services.agent.backends.docker import docker_available_sync

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    assert docker_available_sync() is False
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    assert docker_available_sync() is False


def test_the_agent_builds_the_docker_backend_from_settings(tmp_path: Path) -> None:
    from services.agent.main import build_backend
    from services.common.settings import Settings

    backend = build_backend(Settings(agent_backend="docker", agent_id="a7", data_dir=tmp_path, docker_stop_grace=3))
    assert (backend.name, backend.agent_id, backend.data_dir, backend.grace) == ("docker", "a7", tmp_path, 3)


def test_the_agent_reads_the_kernel_user_and_scratch_settings_and_refuses_bad_ones(tmp_path: Path) -> None:
    from services.agent.main import build_backend
    from services.common.settings import Settings

    user = KernelUser(2000, 2000) if os.getuid() == 0 else KernelUser(os.getuid(), os.getgid())  # a non-root agent: its own
    env = {"BERTH_AGENT_BACKEND": "docker", "BERTH_DATA_DIR": str(tmp_path), "BERTH_KERNEL_USER": str(user),
           "BERTH_KERNEL_SCRATCH": "64m", "BERTH_KERNEL_TMP": "16m"}
    backend = build_backend(Settings.from_env(env))
    assert backend.user == user
    assert backend.scratch == Scratch(work=64 * MIB, tmp=16 * MIB)
    with pytest.raises(ValueError, match="never run as root"):
        build_backend(Settings.from_env({**env, "BERTH_KERNEL_USER": "0:0"}))
    with pytest.raises(ValueError, match="BERTH_KERNEL_TMP must be a size"):
        build_backend(Settings.from_env({**env, "BERTH_KERNEL_TMP": "-1"}))


class _Engine:
    """A Docker client whose ``system.info()`` answers ``info`` (or raises it when it is an exception)."""

    def __init__(self, info: dict | Exception) -> None:
        self.system = self
        self._info = info

    async def info(self) -> dict:
        if isinstance(self._info, Exception):
            raise self._info
        return self._info


@pytest.mark.parametrize(("info", "warned"), [
    ({"LiveRestoreEnabled": False}, True),
    ({"LiveRestoreEnabled": True}, False),
    ({}, False),  # an engine that does not say
    (ConnectionError("no engine"), False),  # away for now: the exit watcher waits for it
])
def test_an_engine_without_live_restore_is_said_at_the_start(
        info: dict | Exception, warned: bool, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        assert asyncio.run(warn_without_live_restore(_Engine(info))) is warned  # type: ignore[arg-type]
    assert (LIVE_RESTORE_OFF in caplog.text) is warned


def test_an_images_declared_volumes_are_bounded_tmpfs_where_nothing_else_is_mounted() -> None:
    mounts = volume_mounts(["/data", "/home/work", "/var/lib/db/"], {"/home/work", "/tmp"}, 8 << 20)
    assert mounts == {"/data": "rw,exec,nosuid,nodev,size=8388608,mode=1777",
                      "/var/lib/db": "rw,exec,nosuid,nodev,size=8388608,mode=1777"}


@pytest.mark.parametrize("volume", ["/", "data", "/a/../etc", "/a//b"])
def test_a_declared_volume_that_is_not_a_plain_absolute_path_is_refused(volume: str) -> None:
    with pytest.raises(KernelStartError, match="declares the volume"):
        volume_mounts([volume], set(), 1 << 20)
