"""Runs Berth services as separate processes for the benchmarks, as in production."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Sequence

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["service_processes"]


@contextlib.contextmanager
def service_processes(
    modules: Sequence[str], nats_url: str, dsn: str, log_dir: Path, **env: str
) -> Iterator[None]:
    """Runs ``python -m <module>`` for each module against ``nats_url`` and ``dsn`` (extra
    ``BERTH_*`` variables in ``env``), logging to ``log_dir``; terminates them on exit."""
    environ = {**os.environ, "BERTH_NATS_URL": nats_url, "BERTH_PG_DSN": dsn, "BERTH_LOG_LEVEL": "WARNING", **env}
    procs = []
    for module in modules:
        with open(log_dir / f"{module}.log", "ab") as log:
            procs.append(subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=environ,
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT))
    try:
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
