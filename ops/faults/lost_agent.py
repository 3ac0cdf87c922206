"""An agent lost for good (issue 13 item 5e): one more simulated agent, run as its own process
(`python -m services.agent`, enrolled on the instance's authenticated bus with `berth admin agent enrol`),
next to the agents `berth up` runs in one process (services/agent/fleet.py); SIGKILLed once it holds
kernels, and never started again. The controller's heartbeat timeout then marks it lost and its sessions
end with reason ``agent-lost``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from services.cli.queries import AGENTS
from services.common.lifetime import die_with_parent
from services.sdk.client import BerthAPIError, BerthClient

__all__ = ["LoneAgent"]

BERTH = [sys.executable, "-m", "services.cli"]
POLL = 0.1


class LoneAgent:
    """A simulated agent ``agent_id`` in a process of its own, against the `berth up` of ``berth_env``."""

    def __init__(self, agent_id: str, work_dir: Path, berth_env: Mapping[str, str], nats_url: str,
                 capacity: str) -> None:
        self.agent_id, self.work_dir, self.berth_env, self.nats_url = agent_id, work_dir, dict(berth_env), nats_url
        self.capacity = capacity
        self.log = work_dir / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def _berth(self, *args: str) -> str:
        done = subprocess.run([*BERTH, *args], env=self.berth_env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"berth {' '.join(args)} failed: {done.stderr[-500:]}")
        return done.stdout

    def start(self) -> None:
        """Enrols the agent on the bus and starts its process."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        creds = self.work_dir / f"{self.agent_id}.creds"
        self._berth("admin", "agent", "enrol", self.agent_id, "--data-dir", self.berth_env["BERTH_DATA_DIR"],
                    "--file", str(creds))
        env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
        env.update({"BERTH_AGENT_ID": self.agent_id, "BERTH_AGENT_BACKEND": "simulated",
                    "BERTH_NATS_URL": self.nats_url, "BERTH_NATS_CREDS": str(creds),
                    "BERTH_DATA_DIR": str(self.work_dir), "BERTH_AGENT_CAPACITY": self.capacity})
        for name in ("BERTH_HEARTBEAT_INTERVAL", "BERTH_SIM_DELAY"):
            if name in self.berth_env:
                env[name] = self.berth_env[name]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "services.agent"], env=env,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         preexec_fn=die_with_parent(signal.SIGTERM))

    async def wait_for(self, client: BerthClient, what: str, check: Callable[[dict[str, Any]], bool],
                       timeout: float) -> None:
        """Waits (at most ``timeout`` s) for ``check(row)`` on the agent's row of the ``agents`` query."""
        deadline = time.monotonic() + timeout
        row: dict[str, Any] | None = None
        while True:
            if self.proc is not None and self.proc.returncode is None and self.proc.poll() is not None:
                raise RuntimeError(f"agent {self.agent_id} exited: {self.tail()}")
            try:
                rows = (await client.execute(AGENTS))["agents"]
                row = next((r for r in rows if r["id"] == self.agent_id), None)
            except BerthAPIError:
                row = None
            if row is not None and check(row):
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(f"agent {self.agent_id} not {what} within {timeout:g} s: {row}; {self.tail()}")
            await asyncio.sleep(POLL)

    def kill(self) -> int:
        """SIGKILLs the agent's process for good; returns its PID."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def tail(self, chars: int = 1500) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""
