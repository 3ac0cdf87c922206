"""NATS as a 3-node JetStream cluster (issue 13 item 5d): three nats-server processes of the wheel on
loopback, routed to each other (as ops/nats/cluster.conf), each with its own storage, all with the same
trust (``services.common.bus_trust``, as `berth admin bus init` writes it). `berth up` uses it when
BERTH_NATS_URL lists the three nodes, with BERTH_STREAM_REPLICAS=3."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from services.common.bus import connect
from services.common.bus_trust import BusTrust
from services.common.lifetime import die_with_parent
from services.supervisor.embedded import free_port, nats_server_binary

__all__ = ["NatsCluster"]

HOST = "127.0.0.1"
NODES = 3
START_TIMEOUT = 30.0


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


class NatsCluster:
    """Three nats-server nodes with their state under ``work_dir/node-<i>`` and their trust in ``trust_dir``."""

    def __init__(self, work_dir: Path, trust_dir: Path) -> None:
        self.work_dir, self.trust = work_dir, BusTrust.load_or_create(trust_dir)
        self.ports = [free_port(HOST) for _ in range(NODES)]
        self.routes = [free_port(HOST) for _ in range(NODES)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * NODES

    @property
    def url(self) -> str:
        return ",".join(f"nats://{HOST}:{port}" for port in self.ports)

    def admin_credentials(self) -> Path:
        return self.trust.credentials("admin")

    def _command(self, index: int) -> list[str]:
        """The trust's server config (as the embedded server uses it), the node's port, storage and routes."""
        routes = ",".join(f"nats://{HOST}:{port}" for port in self.routes)
        return [nats_server_binary(), "-c", str(self.trust.server_config), "-n", f"n{index}", "-a", HOST,
                "-p", str(self.ports[index]), "-js", "-sd", str(self.work_dir / f"node-{index}" / "jetstream"),
                "--cluster_name", "berth", "--cluster", f"nats://{HOST}:{self.routes[index]}", "--routes", routes]

    def start(self) -> str:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for index in range(NODES):
            with open(self.work_dir / f"node-{index}.log", "ab") as log:
                self.procs[index] = subprocess.Popen(
                    self._command(index), stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent(signal.SIGTERM))
        deadline = time.monotonic() + START_TIMEOUT
        while not all(_answers(port) for port in self.ports):
            if time.monotonic() > deadline or any(p is not None and p.poll() is not None for p in self.procs):
                raise RuntimeError(f"the NATS cluster did not start: {self.tail()}")
            time.sleep(0.1)
        return self.url

    async def stream_replicas(self, stream: str) -> int:
        """Returns the replicas of ``stream``."""
        nc = await connect(self.url, "berth-faults", self.admin_credentials())
        try:
            return (await nc.jetstream().stream_info(stream)).config.num_replicas or 1
        finally:
            await nc.close()

    def kill(self, index: int) -> int:
        """SIGKILLs node ``index`` for good; returns its PID."""
        proc = self.procs[index]
        assert proc is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        return proc.pid

    def stop(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def tail(self, chars: int = 1500) -> str:
        return "\n".join(f"node-{i}: " + (self.work_dir / f"node-{i}.log").read_text(errors="replace")[-chars:]
                         for i in range(NODES) if (self.work_dir / f"node-{i}.log").exists())
