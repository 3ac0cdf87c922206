"""Pending sessions whose user-written fields are as large as a request may make them and incompressible
(random): a 64 KiB startup command, every mount with the longest target, the longest name. The scheduler
plans without any of it; its checkpoint must not carry it."""

from __future__ import annotations

import secrets
from decimal import Decimal

from contracts import session as session_ev
from contracts.limits import STARTUP_COMMAND
from contracts.mounts import MAX_MOUNTS, MAX_TARGET_BYTES, MountSpec
from tests.support.scheduler_history import GIB, History

__all__ = ["request_heavy", "startup_command"]


def startup_command() -> str:
    """Returns a random command of the largest size a request may have (64 KiB)."""
    return secrets.token_urlsafe(STARTUP_COMMAND.max_length * 3 // 4)  # base64: 6 random bits per byte


def _mount(n: int) -> MountSpec:
    component = secrets.token_hex(100)  # 200 characters, under the 255 of a path component
    target = f"/home/work/{n}-{component}/{component}"[:MAX_TARGET_BYTES]
    return MountSpec(folder_id=f"vfolder_{secrets.token_hex(16)}", name=secrets.token_hex(64), volume="local",
                     target=target)


def request_heavy(history: History, session_id: str, command: str | None = None) -> str:
    """Records the request of a pending session with the largest free-form fields; returns its command."""
    command = command or startup_command()
    kernel = session_ev.KernelSpec(kernel_id=f"{session_id}-k", slots={"cpu": Decimal(1), "mem": GIB})
    history.emit(session_id, session_ev.SessionRequested, owner="alice", spec=session_ev.SessionSpec(
        name=secrets.token_hex(32), image="python:3.11", kernels=[kernel], startup_command=command,
        mounts=[_mount(n) for n in range(MAX_MOUNTS)]))
    return command
