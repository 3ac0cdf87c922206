"""Fixtures that run a whole Berth with `berth up` as a subprocess and drive it with the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from services.common.lifetime import die_with_parent
from tests.support.waiting import wait_for

BERTH = [sys.executable, "-m", "services.cli"]
UP_SUMMARY_END = b"Ctrl-C stops Berth"


class RunningBerth:
    """A `berth up` process and a way to run `berth` commands against it."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.env = env
        self.log = data_dir / "up.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    def start(self, *extra: str, timeout: float = 90) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "instance.json").unlink(missing_ok=True)
        self._log_start = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as log:
            # a killed test run must not leave its berth up (and that one's NATS and PostgreSQL) behind
            self.proc = subprocess.Popen([*BERTH, "up", *extra], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         preexec_fn=die_with_parent(signal.SIGTERM))
        wait_for(self._ready, timeout=timeout, message=f"berth up did not become ready; log:\n{self.log_text()}")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"berth up exited with {self.proc.returncode}; log:\n{self.log_text()}")
        # instance.json is written before `berth up` prints its summary; a test reads that summary
        # (agent, capacity) right after start, so ready is the summary's last line printed by this start.
        if not (self.data_dir / "instance.json").exists():
            return False
        with open(self.log, "rb") as log:
            log.seek(self._log_start)
            return UP_SUMMARY_END in log.read()

    def stop(self, sig: int = signal.SIGINT) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"berth up did not stop within 30 s; log:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def berth(self, *args: str, check: bool = True, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*BERTH, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"berth {' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
        return done

    def berth_json(self, *args: str) -> object:
        return json.loads(self.berth("-o", "json", *args).stdout)

    def instance(self) -> dict[str, object]:
        return json.loads((self.data_dir / "instance.json").read_text())

    def bus_violations(self) -> list[str]:
        """Returns the embedded NATS's log lines about a permission refused to a service or agent:
        none when every identity may do what its work needs (DESIGN.md §10)."""
        log = self.data_dir / "nats" / "nats-server.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return [line for line in text.splitlines() if re.search(r"(Publish|Subscription) Violation", line)]


class Tenant:
    """Runs `berth` with one keypair's credentials."""

    def __init__(self, berth: RunningBerth, access_key: str, secret_key: str) -> None:
        self.access_key = access_key
        self.env = {**berth.env, "BERTH_ENDPOINT": str(berth.instance()["gateway_url"]),
                    "BERTH_ACCESS_KEY": access_key, "BERTH_SECRET_KEY": secret_key}

    def berth(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*BERTH, *args], env=self.env, capture_output=True, text=True, timeout=90)
        if check and done.returncode != 0:
            raise AssertionError(f"berth {' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.berth("-o", "json", *args).stdout)

    def sessions(self) -> list[dict[str, Any]]:
        return self.json("session", "ls", "--all")


def tenant(berth: RunningBerth, user: str, policy: str = "default") -> Tenant:
    """Creates user ``user`` (domain and project default) with a keypair of ``policy``; returns its CLI."""
    berth.berth("admin", "user", "create", user)
    created = berth.berth_json("admin", "keypair", "create", user, "--policy", policy)
    return Tenant(berth, created["accessKey"], created["secretKey"])


def berth_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a test's `berth up`. No e2e test means to lose an agent, and a loss stops
    placements on it (and ends its sessions after the grace): the heartbeat timeout is far longer than
    an agent's restart (a SIGKILLed agent process starting again) or a stall of a busy machine, not the
    production default of 5 s. The agent's
    capacity is fixed (`berth up` would detect the machine's), so tests do not depend on the machine,
    and the agent never pulls an image: no test sends traffic to a registry."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    env.update({"BERTH_DATA_DIR": str(data_dir), "BERTH_SIM_DELAY": "0.01", "BERTH_AGENT_BACKEND": "simulated",
                "BERTH_HEARTBEAT_TIMEOUT": "60", "BERTH_AGENT_CAPACITY": "cpu=4,mem=8g", "BERTH_IMAGE_PULL": "never",
                **extra})
    return env


@contextlib.contextmanager
def running(data_dir: Path, env: dict[str, str]) -> Iterator[RunningBerth]:
    """Yields a started `berth up`; afterwards, when it still runs, checks with `berth doctor`
    that quota usage and agent occupancy agree with the sessions, then stops it."""
    berth = RunningBerth(data_dir, env)
    berth.start()
    try:
        yield berth
        if berth.proc and berth.proc.poll() is None:
            doctor = berth.berth("doctor", check=False)
            assert doctor.returncode == 0, f"berth doctor found drift at the end:\n{doctor.stdout}\n{doctor.stderr}"
            assert berth.bus_violations() == []
    finally:
        if berth.proc and berth.proc.poll() is None:
            berth.stop()


@pytest.fixture
def berth_up(tmp_path: Path, pg_dsn: str) -> Iterator[RunningBerth]:
    """A running Berth with its own NATS (from the wheel) and a fresh database."""
    with running(tmp_path / "berth", berth_env(tmp_path / "berth", BERTH_PG_DSN=pg_dsn)) as berth:
        yield berth


@pytest.fixture
def process_berth(tmp_path: Path, pg_dsn: str) -> Iterator[RunningBerth]:
    """A running Berth whose agent runs kernels as local processes."""
    data = tmp_path / "berth"
    with running(data, berth_env(data, BERTH_PG_DSN=pg_dsn, BERTH_AGENT_BACKEND="process")) as started:
        yield started
    for pid_file in (data / "kernels").glob("*/runner.pid"):  # runners outlive their agent, as containers do
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)
