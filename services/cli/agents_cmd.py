"""``berth agents ls``."""

from __future__ import annotations

import click

from services.cli import queries as q
from services.cli.connection import connect_client
from services.cli.running import run_async
from services.cli.output import Output

__all__ = ["agents"]

COLUMNS = [("id", "ID"), ("hostname", "HOST"), ("backend", "BACKEND"), ("resourceGroup", "GROUP"), ("status", "STATUS"),
           ("capacity", "CAPACITY"), ("occupied", "OCCUPIED"), ("kernelCount", "KERNELS")]


@click.group()
def agents() -> None:
    """Inspect the agents (compute nodes)."""


@agents.command("ls")
@click.pass_obj
@run_async
async def ls(out: Output) -> None:
    """List agents with their capacity and occupied slots."""
    rows = (await connect_client().execute(q.AGENTS, {}))["agents"]
    out.table(rows, COLUMNS)
