"""Placement options of ``berth session create``: project, resource group, priority, cluster
mode and size, start time, batch timeout, dependencies and designated agents; and the folder
mounts (``--mount NAME[:PATH][:ro|rw]``) of ``berth session create`` and ``berth run``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

__all__ = ["mount_option", "parse_mount", "placement_input", "placement_options"]

PERMISSIONS = ("ro", "rw")


def parse_mount(text: str) -> dict[str, str]:
    """Returns the ``createSession`` mount input of ``NAME[:PATH][:ro|rw]``; ``click.BadParameter``
    when it has an empty part or more than three, or a third that is not ``ro`` or ``rw``."""
    parts = text.split(":")
    if len(parts) > 3 or any(not part for part in parts):
        raise click.BadParameter(f"{text!r}: expected NAME[:PATH][:ro|rw]")
    mount = {"name": parts[0]}
    rest = parts[1:]
    if rest and rest[-1] in PERMISSIONS:
        mount["permission"] = rest.pop()
    if len(rest) > 1:
        raise click.BadParameter(f"{text!r}: the permission is ro or rw, got {rest[-1]!r}")
    if rest:
        mount["target"] = rest[0]
    return mount


def _mounts(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[dict[str, str]]:
    return [parse_mount(value) for value in values]


mount_option = click.option(
    "--mount", "mounts", multiple=True, metavar="NAME[:PATH][:ro|rw]", callback=_mounts,
    help="Mount a storage folder (yours, your project's or shared with you, by name or id; repeatable) at PATH (default "
         "/home/work/NAME; relative paths are under /home/work), read-only or read-write (default: your "
         "permission, at most rw). Your folders named .something mount by themselves.")
"""``--mount``: reaches the command as ``mounts``, a list of ``createSession`` mount inputs."""


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
        mount_option,
    ]
    for option in reversed(options):
        func = option(func)
    return func


def placement_input(*, project: str | None, resource_group: str | None, priority: int | None,
                    cluster_size: int | None, cluster_mode: str | None, starts_at: dt.datetime | None,
                    batch_timeout: int | None, dependencies: tuple[str, ...], agents: tuple[str, ...],
                    mounts: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """Returns the ``createSession`` input fields of the options that were given."""
    if starts_at is not None and starts_at.tzinfo is None:
        starts_at = starts_at.replace(tzinfo=dt.UTC)
    given = {
        "project": project, "resourceGroup": resource_group, "priority": priority, "clusterSize": cluster_size,
        "clusterMode": cluster_mode, "startsAt": starts_at.isoformat() if starts_at else None,
        "batchTimeout": batch_timeout, "dependencies": list(dependencies) or None, "designatedAgents": list(agents) or None,
        "mounts": mounts or None,
    }
    return {key: value for key, value in given.items() if value is not None}
