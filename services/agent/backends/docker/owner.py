"""Which containers on the engine are this agent's: labelled with its agent id AND made by its Berth instance.

Several Berth instances may share one Docker engine (each ``berth up`` with its own ``--data-dir``, the e2e tests
beside a user's own instance), and every one's local agent is called ``local``. Told apart by ``berth.agent_id``
alone, a second instance took the first one's running kernels for orphans and destroyed them at its start, and its
exit watch reported, then removed, the first one's exited containers. So each container also carries the label
``berth.instance`` (``spec.instance_of``), and every listing, adoption, orphan destruction and exit of an agent
is taken only from containers with its agent id and its instance.

The instance is a hash of the agent's kernels directory (``<data_dir>/kernels``, resolved), not a random id kept
in it: it needs no configuration nor state; it is the same at every restart of the instance; two instances on one
host cannot share that directory (their kernels' ``io/`` and sockets would clash), so they never share it; a copy
of the data directory (a second instance started from a backup) cannot carry it along, as it would a file; and it
is the very fact a kernel depends on, its ``io/`` bind-mounted from there, so moving the directory (which breaks
the running kernels anyway) is the only thing that changes it. Its limit: two hosts with the same data directory
path and agent id on one remote engine (``DOCKER_HOST`` over TCP) are one instance to it.

A container made before the label (by an agent before the upgrade) is this agent's when its ``io/`` is bound from
this agent's kernels directory (as configured or resolved): the instance that made it recognises it, no other
ever takes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.agent.backends.docker.spec import CONTAINER_IO, LABEL_AGENT, LABEL_INSTANCE, LABEL_KERNEL, instance_of

__all__ = ["Owner"]


@dataclass(frozen=True)
class Owner:
    """An agent of one Berth instance: ``kernels_dirs`` holds its kernels directory, resolved (the instance), then
    the same directory as configured when that spelling differs (a link on the way: older containers' mounts)."""

    agent_id: str
    kernels_dirs: tuple[Path, ...]

    @classmethod
    def of(cls, agent_id: str, data_dir: Path) -> Owner:
        """The owner of the kernels of ``agent_id`` under ``data_dir`` (resolved here: the instance does not depend
        on how the path is spelt)."""
        configured = Path(data_dir).absolute() / "kernels"
        resolved = Path(data_dir).resolve() / "kernels"
        return cls(agent_id, (resolved,) if configured == resolved else (resolved, configured))

    @property
    def instance(self) -> str:
        """The value of this agent's ``berth.instance`` label."""
        return instance_of(self.kernels_dirs[0])

    @property
    def label_filter(self) -> list[str]:
        """The engine's label filter for listings and events: the agent id only (a container from before the upgrade
        has no instance label); each container found is then judged by ``owns`` (or ``by_labels``)."""
        return [f"{LABEL_AGENT}={self.agent_id}"]

    def by_labels(self, labels: Mapping[str, str]) -> bool | None:
        """Whether a container with ``labels`` is this agent's; None when only its mounts can tell (no instance
        label: made before the upgrade by an agent of this id)."""
        if labels.get(LABEL_AGENT) != self.agent_id:
            return False
        instance = labels.get(LABEL_INSTANCE)
        return None if instance is None else instance == self.instance

    def owns(self, container: Mapping[str, Any]) -> bool:
        """Whether ``container`` (an entry of the engine's listing, or its inspection) is this agent's: its labels
        say so, or, without an instance label, its ``io/`` is bound from this agent's kernels directory."""
        labels = container.get("Labels") or (container.get("Config") or {}).get("Labels") or {}
        verdict = self.by_labels(labels)
        if verdict is not None:
            return verdict
        kernel_id = labels.get(LABEL_KERNEL)
        if not kernel_id:
            return False
        own_io = {str(kernels / kernel_id / "io") for kernels in self.kernels_dirs}
        return any(mount.get("Destination") == str(CONTAINER_IO) and mount.get("Source") in own_io
                   for mount in container.get("Mounts") or ())
