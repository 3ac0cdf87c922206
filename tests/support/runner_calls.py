"""Talking to a kernel runner's socket in tests, as the agent does (``open_runner``: links never followed)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from services.agent.runner_socket import open_runner

__all__ = ["WRITE_ATTEMPT", "ask", "run_code"]

WRITE_ATTEMPT = """
import errno, os
def attempt(path, text='x'):
    try:
        with open(path, 'w') as f:
            f.write(text)
        return 'ok'
    except OSError as exc:
        return errno.errorcode[exc.errno]
"""
"""Code for a kernel: ``attempt(path, text)`` writes a file and returns 'ok' or the errno's name (EROFS, EACCES...)."""


async def ask(path: Path, request: dict, *, until: Callable[[dict], bool]) -> list[dict]:
    """Sends one request to a runner socket; returns its answers up to the one ``until`` accepts."""
    reader, writer = await open_runner(path)
    try:
        writer.write((json.dumps(request) + "\n").encode())
        await writer.drain()
        answers: list[dict] = []
        while True:
            answers.append(json.loads(await asyncio.wait_for(reader.readline(), 20)))
            if until(answers[-1]):
                return answers
    finally:
        writer.close()


async def run_code(path: Path, code: str) -> tuple[str, int]:
    """Runs ``code`` in the kernel's namespace through its runner; returns (stdout, exit code)."""
    answers = await ask(path, {"op": "run", "run_id": "r", "mode": "query", "code": code},
                        until=lambda a: a.get("kind") == "done")
    out = "".join(a["data"] for a in answers if a.get("kind") == "stdout")
    return out, answers[-1]["exit_code"]
