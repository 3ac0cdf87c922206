"""The user kernels run as, and own folder directories as (``BERTH_KERNEL_USER``, ``uid:gid``):
never root. ``auto`` is Backend.AI's ``work`` user, 1000:1000, when the process runs as root, else
the process's own uid:gid. Shared by the Docker backend (``confinement.py``) and the storage
service (folder directories belong to it, so non-root kernels can write rw mounts)."""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["AUTO_USER", "WORK_USER", "KernelUser", "kernel_user"]

AUTO_USER = "auto"
WORK_USER = (1000, 1000)
"""Backend.AI's ``work`` user and group."""
@dataclass(frozen=True)
class KernelUser:
    """The uid and gid a kernel's processes run as (``User`` of the container)."""

    uid: int
    gid: int

    def __str__(self) -> str:
        return f"{self.uid}:{self.gid}"


def kernel_user(setting: str, *, agent_uid: int | None = None, agent_gid: int | None = None) -> KernelUser:
    """Returns the kernel user of ``setting`` (``auto`` or ``uid:gid``); ValueError naming
    ``BERTH_KERNEL_USER`` when it is malformed, root, or another user than a non-root agent's."""
    uid_now = os.getuid() if agent_uid is None else agent_uid
    gid_now = os.getgid() if agent_gid is None else agent_gid
    text = setting.strip()
    if text.lower() == AUTO_USER:
        return KernelUser(*WORK_USER) if uid_now == 0 else KernelUser(uid_now, gid_now)
    uid_text, sep, gid_text = text.partition(":")
    if not sep or not uid_text.isdigit() or not gid_text.isdigit():
        raise ValueError(f"BERTH_KERNEL_USER must be 'auto' or 'uid:gid' with numbers, got {setting!r}")
    user = KernelUser(int(uid_text), int(gid_text))
    if user.uid == 0 or user.gid == 0:
        raise ValueError(f"BERTH_KERNEL_USER={setting}: kernels never run as root (uid or gid 0)")
    if uid_now != 0 and user.uid != uid_now:
        raise ValueError(f"BERTH_KERNEL_USER={setting}: the agent runs as uid {uid_now}, not root, and cannot hand "
                         f"a kernel's socket directory to uid {user.uid}; use {uid_now}:{gid_now} (or 'auto'), "
                         "or run the agent as root")
    return user
