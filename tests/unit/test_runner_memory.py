"""A run that loses a process to the kernel's memory limit is told so, with the limit: the runner
reads its cgroup's OOM kills before and after each run (here a cgroup directory the test writes,
as the kernel's OOM killer would); a worker that died says its variables are gone."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from services.agent.runner.berth_memory import MemoryCgroup, describe_size
from tests.unit.test_runner import RunnerClient, start_runner, text

V1_OOM_CONTROL = "oom_kill_disable 0\nunder_oom 0\noom_kill {kills}\n"
V2_EVENTS = "low 0\nhigh 0\nmax 12\noom 1\noom_kill {kills}\noom_group_kill 0\n"


def cgroup_v1(root: Path, *, kills: int = 0, limit: str = "1073741824") -> Path:
    (root / "memory").mkdir(parents=True)
    (root / "memory" / "memory.oom_control").write_text(V1_OOM_CONTROL.format(kills=kills))
    (root / "memory" / "memory.limit_in_bytes").write_text(limit + "\n")
    return root


def cgroup_v2(root: Path, *, kills: int = 0, limit: str = "268435456") -> Path:
    root.mkdir(parents=True)
    (root / "memory.events").write_text(V2_EVENTS.format(kills=kills))
    (root / "memory.max").write_text(limit + "\n")
    return root


def test_both_cgroup_versions_give_the_kills_and_the_limit(tmp_path: Path) -> None:
    v1 = MemoryCgroup(str(cgroup_v1(tmp_path / "v1", kills=3)))
    v2 = MemoryCgroup(str(cgroup_v2(tmp_path / "v2", kills=5)))
    assert (v1.oom_kills(), v1.limit()) == (3, 1 << 30)
    assert (v2.oom_kills(), v2.limit()) == (5, 256 << 20)


def test_no_limit_and_no_cgroup_are_none(tmp_path: Path) -> None:
    assert MemoryCgroup(str(cgroup_v2(tmp_path / "v2", limit="max"))).limit() is None
    assert MemoryCgroup(str(cgroup_v1(tmp_path / "v1", limit="9223372036854771712"))).limit() is None
    for nothing in (MemoryCgroup(None), MemoryCgroup(str(tmp_path / "missing"))):
        assert (nothing.oom_kills(), nothing.limit(), nothing.killed_note(0)) == (None, None, None)


def test_the_note_comes_only_when_the_kills_grew(tmp_path: Path) -> None:
    root = cgroup_v1(tmp_path / "cg", kills=2, limit=str(64 << 20))
    memory = MemoryCgroup(str(root))
    assert memory.killed_note(2) is None
    assert memory.killed_note(None) is None
    (root / "memory" / "memory.oom_control").write_text(V1_OOM_CONTROL.format(kills=3))
    note = memory.killed_note(2)
    assert note is not None and "out of memory" in note and "(64 MiB)" in note and "oom-kill" in note


@pytest.mark.parametrize("size, text_", [(512, "512 B"), (1536, "1.5 KiB"), (64 << 20, "64 MiB"),
                                         (1 << 30, "1 GiB"), (3 << 29, "1.5 GiB")])
def test_sizes_are_told_for_people(size: int, text_: str) -> None:
    assert describe_size(size) == text_


KILLED_IN_A_RUN = """
import os
path = {events!r}
text = open(path).read()
open(path, 'w').write(text.replace('oom_kill 0', 'oom_kill 1'))
print('x' * 100)
os.kill(os.getpid(), 9)
"""
"""What the kernel does to a run that reaches its limit: its oom_kill count grows and the process
dies by SIGKILL (here the worker does both itself, after some output)."""


@pytest.fixture
def cgroup(tmp_path: Path) -> Path:
    return cgroup_v2(tmp_path / "cgroup", limit=str(512 << 20))


@pytest.fixture
def runner(tmp_path: Path, cgroup: Path) -> Iterator[RunnerClient]:
    proc, path = start_runner(tmp_path, "--cgroup", str(cgroup))
    client = RunnerClient(path)
    yield client
    client.close()
    proc.terminate()
    proc.wait(timeout=10)


def test_a_run_that_lost_a_process_to_the_limit_is_told_so(runner: RunnerClient, cgroup: Path) -> None:
    runner.run("x = 1", run_id="a")
    chunks, done = runner.run(KILLED_IN_A_RUN.format(events=str(cgroup / "memory.events")), run_id="b")
    assert done["exit_code"] == 137 and text(chunks, "stdout") == "x" * 100 + "\n"
    stderr = text(chunks, "stderr")
    assert "berth: the Python worker was killed by SIGKILL; its variables are gone" in stderr
    assert "berth: out of memory: the kernel reached its memory limit (512 MiB) during this run" in stderr

    chunks, done = runner.run("print('x' in globals())", run_id="c")
    assert (text(chunks, "stdout"), text(chunks, "stderr"), done["exit_code"]) == ("False\n", "", 0)


def test_a_run_within_the_limit_gets_no_note(runner: RunnerClient) -> None:
    chunks, done = runner.run("exit 3", mode="batch")
    assert (text(chunks, "stderr"), done["exit_code"]) == ("", 3)


def test_a_worker_that_exited_says_its_variables_are_gone(tmp_path: Path) -> None:
    proc, path = start_runner(tmp_path)
    client = RunnerClient(path)
    try:
        chunks, done = client.run("import os; os._exit(7)")
        assert done["exit_code"] == 7
        assert text(chunks, "stderr") == ("berth: the Python worker exited with status 7; its variables are gone, "
                                          "the next run starts afresh\n")
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)
