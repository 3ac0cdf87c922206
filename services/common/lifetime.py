"""Child processes that end with their parent: the Linux parent-death signal.

``subprocess.Popen(..., preexec_fn=die_with_parent(signal.SIGTERM))`` (or the same argument to
``asyncio.create_subprocess_exec``) makes the child ask the kernel, between fork and exec, for
``prctl(PR_SET_PDEATHSIG, sig)``: when the process that started it dies, however it dies (SIGKILL
included), the child receives ``sig``. ``berth up`` starts ``nats-server``, ``postgres`` and the
process backend's kernel runners this way, so that killing it leaves none of them behind.

Caveats:

- The "parent" is the *thread* that forked the child: start such children from a thread that lives
  as long as they should (the main thread, or the event loop's thread), never from a short-lived
  worker thread (``asyncio.to_thread``), or the child gets the signal when that thread ends.
- The kernel clears the setting when the child changes credentials or execs a set-user-ID binary.
  ``preexec_fn`` runs after Popen's ``user=``/``group=`` switch, so a child started with those keeps it.
- The parent may die between fork and the ``prctl`` call: the child then checks ``getppid()``
  against the parent's PID recorded before the fork and exits at once if it was re-parented.

Elsewhere than on Linux, ``die_with_parent`` returns None (no ``preexec_fn``) and nothing is armed.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Callable

__all__ = ["die_with_parent"]

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """Returns a ``preexec_fn`` that arms the parent-death signal ``sig`` in the child (Linux),
    or None elsewhere. Call it in the parent, right before starting the child."""
    if not sys.platform.startswith("linux"):
        return None
    # Resolved here, in the parent: the child must not load libraries between fork and exec.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.restype = ctypes.c_int
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    parent = os.getpid()
    number = int(sig)

    def arm() -> None:
        if prctl(PR_SET_PDEATHSIG, number, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before the prctl call took effect
            os._exit(128 + number)

    return arm
