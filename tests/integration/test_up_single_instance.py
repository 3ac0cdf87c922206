"""One `berth up` per data directory: a second one, started while the first runs, refuses in one line
and exit status 1, touching nothing: the first keeps its services, its sessions' agent and its
instance file (before, the second started a second nats-server on the same JetStream store and a
second agent of the same name, and its exit removed the first's instance file)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_stop import ROOT, Up


@pytest.mark.slow
def test_a_second_berth_up_on_the_same_data_dir_refuses_and_touches_nothing(tmp_path: Path) -> None:
    up = Up(tmp_path / "berth")
    try:
        _second_refuses(up)
    finally:
        if up.proc.poll() is None:
            up.proc.kill()
            up.proc.wait()


def _second_refuses(up: Up) -> None:
    instance = (up.data_dir / "instance.json").read_bytes()
    services = up.services()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    second = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up", "--backend", "simulated", "--data-dir", str(up.data_dir)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = second.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        second.terminate()
        out, _ = second.communicate(timeout=30)
        raise AssertionError(f"the second berth up did not refuse; its output:\n{out[-3000:]}") from None
    assert second.returncode == 1, out
    assert out.splitlines() == [
        f"berth up: Berth is already running on {up.data_dir} (pid {up.proc.pid}); "
        f"stop it first (Ctrl-C in its terminal, or kill -TERM {up.proc.pid})"], out
    assert up.proc.poll() is None
    assert (up.data_dir / "instance.json").read_bytes() == instance
    assert up.services() == services
