"""Placement options of ``berth session create``: project, resource group, priority, cluster
mode and size, start time, batch timeout, dependencies and designated agents."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

__all__ = ["placement_input", "placement_options"]


def placement_options(func: Any) -> Any:
    """Adds the placement options to a command (they reach it as keyword arguments)."""
    options = [
        click.option("--project", help='Project to run in (default: "default" if you belong to it, else your first).'),
        click.option("--resource-group", help='Resource group to run in (default: "default").'),
        click.option("--priority", type=click.IntRange(0, 100), help="0..100, higher is scheduled first (default 10; above 10: admins only)."),
        click.option("--cluster-size", type=click.IntRange(1, 64), help="Number of kernels (default 1)."),
        click.option("--cluster-mode", type=click.Choice(["single-node", "multi-node"]),
                     help="All kernels on one agent (default), or one agent per kernel allowed."),
        click.option("--starts-at", metavar="TIME",
                     type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
                     help="Do not start a batch session before this time (ISO 8601; UTC without an offset)."),
        click.option("--batch-timeout", type=click.IntRange(min=0), help="Seconds a batch session may run (0 = no limit)."),
        click.option("--depends-on", "dependencies", multiple=True, metavar="SESSION",
                     help="A session (id, unique id prefix or name) that must finish successfully first (repeatable)."),
        click.option("--agent", "agents", multiple=True, metavar="AGENT_ID",
                     help="Only these agents may run it (repeatable; admins only)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def placement_input(*, project: str | None, resource_group: str | None, priority: int | None,
                    cluster_size: int | None, cluster_mode: str | None, starts_at: dt.datetime | None,
                    batch_timeout: int | None, dependencies: tuple[str, ...], agents: tuple[str, ...]) -> dict[str, Any]:
    """Returns the ``createSession`` input fields of the options that were given."""
    if starts_at is not None and starts_at.tzinfo is None:
        starts_at = starts_at.replace(tzinfo=dt.UTC)
    given = {
        "project": project, "resourceGroup": resource_group, "priority": priority, "clusterSize": cluster_size,
        "clusterMode": cluster_mode, "startsAt": starts_at.isoformat() if starts_at else None,
        "batchTimeout": batch_timeout, "dependencies": list(dependencies) or None, "designatedAgents": list(agents) or None,
    }
    return {key: value for key, value in given.items() if value is not None}
