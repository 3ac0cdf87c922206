"""Soak: rounds of concurrent create / wait RUNNING / terminate through the public API, overlapping.

Runs ``berth up --backend simulated --agents N --agent-capacity cpu=1000,mem=1000g`` as a subprocess
(its own nats-server, a temporary data dir) on a scratch database ``berth_soak_<hex>`` created
through --pg-admin-dsn (default $BERTH_PG_DSN, else postgresql://postgres@127.0.0.1:5432/postgres).
Then, R times: C concurrent clients (signed GraphQL, ``BerthClient``) send S ``createSession``;
once all S are RUNNING they send ``terminateSession`` for all of them, and the next round starts
at once while that one is still terminating. At the end every session must be TERMINATED (or
CANCELLED) and the ``doctor`` query clean. The driver is ``soak_driver.py`` (shared with
``tests/e2e/test_soak.py``).

Prints a table per round: sessions, create/s (accepted createSession per second), RUNNING/s (from
the round's first create to its last RUNNING), terminate s (from its first terminateSession to its
last TERMINATED), round s (first create to last TERMINATED), conflicts (scheduling passes refused by
a concurrent change: the scheduler's "scheduling pass conflicted" / "could not catch up after a
conflict" lines in berth up's log while the round was the newest one), and the round's duration
relative to the first's. Exits 1 when a session did not converge, doctor is not clean, or
a round took more than --max-ratio (1.5) times the first; 2 when Berth did not start.

Every phase has a deadline (--timeout s), so the script always ends; on a miss it says which round
and how many sessions in which status, keeps berth up's log (path printed), and still cleans up:
it stops berth up (SIGTERM, then SIGKILL of its process group and of any process of its data dir)
and drops the scratch database.

Usage: .venv/bin/python ops/bench/soak.py [--rounds 3] [--sessions 400] [--clients 16] [--agents 10]
       [--timeout 300] [--sim-delay S] [--pg-admin-dsn DSN]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from services.supervisor.embedded_postgres import create_database, drop_database  # noqa: E402
from services.sdk.instance import FILE_NAME, Instance, read_instance  # noqa: E402
from ops.bench.soak_driver import Endpoint, run_soak  # noqa: E402
from ops.bench.soak_report import format_table  # noqa: E402

DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
CAPACITY = "cpu=1000,mem=1000g"
READY_TIMEOUT = 90
STOP_TIMEOUT = 30


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _processes_of(data_dir: Path) -> list[int]:
    """PIDs (other than ours) whose command line names ``data_dir``: what berth up started there."""
    mark = str(data_dir).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if mark in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


class BerthUp:
    """``berth up`` as a subprocess in its own process group, logging to ``data_dir/up.log``."""

    def __init__(self, data_dir: Path, pg_dsn: str, agents: int, sim_delay: float | None) -> None:
        self.data_dir, self.log = data_dir, data_dir / "up.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
        env.update({"BERTH_DATA_DIR": str(data_dir), "BERTH_PG_DSN": pg_dsn, "BERTH_AGENT_BACKEND": "simulated"})
        args = ["up", "--backend", "simulated", "--agents", str(agents), "--agent-capacity", CAPACITY]
        if sim_delay is not None:
            args += ["--sim-delay", str(sim_delay)]
        self.cmd, self.env = [sys.executable, "-m", "services.cli", *args], env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Instance:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT
        while not (self.data_dir / FILE_NAME).exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"berth up exited with {self.proc.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"berth up was not ready within {READY_TIMEOUT} s:\n{self.tail()}")
            time.sleep(0.1)
        return read_instance(self.data_dir)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        """SIGTERM, then (after STOP_TIMEOUT) SIGKILL of its process group; then any process left
        that names the data dir (its nats-server runs in a session of its own)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                say(f"berth up (pid {self.proc.pid}) did not stop within {STOP_TIMEOUT} s after SIGTERM; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # any child left in its group
        leftovers = _processes_of(self.data_dir)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if leftovers:
            say(f"killed {len(leftovers)} process(es) berth up left behind: {leftovers}")


@contextlib.contextmanager
def scratch_database(admin_dsn: str) -> Iterator[str]:
    name = f"berth_soak_{uuid.uuid4().hex[:8]}"
    dsn = create_database(admin_dsn, name)
    try:
        yield dsn
    finally:
        drop_database(admin_dsn, name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--sessions", type=int, default=400, help="sessions per round (default 400)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--agents", type=int, default=10, help=f"simulated agents of {CAPACITY} (default 10)")
    parser.add_argument("--timeout", type=float, default=300,
                        help="deadline of each phase in seconds: a round's creations, its wait for RUNNING, its "
                             "terminations, the final wait for convergence (default 300)")
    parser.add_argument("--max-ratio", type=float, default=1.5,
                        help="fail when a round takes longer than this times the first (default 1.5)")
    parser.add_argument("--sim-delay", type=float, help="seconds per step of the simulated backend (berth up's default)")
    parser.add_argument("--pg-admin-dsn", default=os.environ.get("BERTH_PG_DSN") or DEFAULT_ADMIN_DSN)
    args = parser.parse_args()
    if min(args.rounds, args.sessions, args.clients, args.agents) < 1 or args.timeout <= 0:
        parser.error("--rounds, --sessions, --clients, --agents must be at least 1 and --timeout positive")

    say(f"soak: {args.rounds} rounds x {args.sessions} sessions, {args.clients} clients, {args.agents} simulated "
        f"agents of {CAPACITY}; deadline {args.timeout:g} s per phase")
    data_dir = Path(tempfile.mkdtemp(prefix="berth-soak-"))
    keep_log = True  # until the soak passed
    try:
        with scratch_database(args.pg_admin_dsn) as pg_dsn:
            berth = BerthUp(data_dir, pg_dsn, args.agents, args.sim_delay)
            try:
                try:
                    instance = berth.start()
                except RuntimeError as exc:
                    say(f"soak: {exc}")
                    return 2
                say(f"soak: berth up pid {berth.proc.pid if berth.proc else '?'}, {instance.gateway_url}")
                endpoint = Endpoint(instance.gateway_url, instance.access_key, instance.secret_key)
                result = asyncio.run(run_soak(
                    endpoint, rounds=args.rounds, sessions=args.sessions, clients=args.clients,
                    timeout=args.timeout, log=berth.log, say=say, alive=berth.alive))
            finally:
                berth.stop()
        print(format_table(result))
        slow = [(rnd.index, ratio) for rnd, ratio in zip(result.rounds, result.ratios())
                if ratio is not None and ratio > args.max_ratio]
        for index, ratio in slow:
            print(f"problem: round {index} took {ratio:.2f}x the first round's time (limit {args.max_ratio}x)")
        failed = not result.ok or bool(slow) or len(result.rounds) < args.rounds
        keep_log = failed
        print("soak: " + ("FAILED" if failed else "passed: every session converged, doctor clean, "
                                                  f"no round over {args.max_ratio}x the first"))
        return 1 if failed else 0
    finally:
        if keep_log and (data_dir / "up.log").exists():
            kept = Path(tempfile.gettempdir()) / f"{data_dir.name}-up.log"
            shutil.copyfile(data_dir / "up.log", kept)
            print(f"soak: berth up's log kept in {kept}")
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
