"""Fault suite, full size: ``python -m ops.faults [--rounds 2] [--sessions 500] [--clients 16] [--agents 10]
[--kills 3] [--down 10] [--timeout 300] [--only FAULT ...]``.

Each scenario of ``ops/faults/scenarios.py`` (SIGKILL of relay+controller+scheduler, of every service
several times each; PostgreSQL stopped ``--down`` s; NATS restarted; an agent in its own process SIGKILLed
for good; one node of a 3-node NATS cluster with R3 streams SIGKILLed for good) runs on a fresh instance
(its own PostgreSQL, `berth up --backend simulated`) under ``--rounds`` x ``--sessions`` sessions, then prints the
table: fault, sessions, converged, lost, duplicated, drift, recover s. Exits 1 when a scenario failed.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

from ops.faults.report import format_outcomes
from ops.faults.scenarios import SCENARIOS, Load, Outcome, run_scenario


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def run_all(faults: list[str], load: Load) -> list[Outcome]:
    outcomes = []
    for fault in faults:
        work = Path(tempfile.mkdtemp(prefix="berth-faults-"))
        say(f"faults: {fault} in {work}")
        try:
            outcome = await run_scenario(fault, work, load, say)
        finally:
            kept = Path(tempfile.gettempdir()) / f"{work.name}-up.log"
            if (work / "berth" / "up.log").exists():
                shutil.copyfile(work / "berth" / "up.log", kept)
            shutil.rmtree(work, ignore_errors=True)
        say(f"faults: {fault}: injected {outcome.injected}; problems {outcome.problems + outcome.soak.problems}; "
            f"berth up's log in {kept}")
        say(format_outcomes([outcome]))
        outcomes.append(outcome)
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the load (default 2)")
    parser.add_argument("--sessions", type=int, default=500, help="sessions per round (default 500)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent API clients (default 16)")
    parser.add_argument("--agents", type=int, default=10, help="simulated agents (default 10)")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs of each service (default 3)")
    parser.add_argument("--down", type=float, default=10.0, help="seconds PostgreSQL / NATS stay down (default 10)")
    parser.add_argument("--timeout", type=float, default=300.0, help="deadline per phase, seconds (default 300)")
    parser.add_argument("--only", nargs="+", choices=sorted(SCENARIOS), help="scenarios to run (default all)")
    args = parser.parse_args()
    if min(args.rounds, args.sessions, args.clients, args.agents, args.kills) < 1 or args.down < 0 or args.timeout <= 0:
        parser.error("--rounds, --sessions, --clients, --agents, --kills must be at least 1, --down not negative, "
                     "--timeout positive")
    load = Load(rounds=args.rounds, sessions=args.sessions, clients=args.clients, agents=args.agents,
                timeout=args.timeout, kills=args.kills, down=args.down)
    outcomes = asyncio.run(run_all(args.only or list(SCENARIOS), load))
    print(format_outcomes(outcomes))
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
