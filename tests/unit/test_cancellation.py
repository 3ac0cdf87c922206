"""A task that is cancelled ends, even when what it waits for arrives at that very moment.

On Python 3.11 ``asyncio.wait_for`` returns a result that arrived as its caller was being cancelled and drops the
cancellation (CPython gh-86296, fixed in 3.12 by building ``wait_for`` on ``asyncio.timeout``). A loop whose only
way out is its cancellation then goes on for ever: the controller's heartbeat watch did, after its connection was
closed for good, and the controller never ended (``test_follow_closed_bus``: 1 CI run, and 2 of 81 runs under load).
Berth's code therefore bounds waits with ``asyncio.timeout``, never ``asyncio.wait_for``.
"""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

from nats.js.kv import KeyValue

from services.controller.liveness import Liveness, watch_heartbeats

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("contracts", "domain", "projections", "services", "ops")
ENDS_WITHIN = 10.0


class _Watcher(KeyValue.KeyWatcher):
    """nats-py's own watcher (its ``updates`` as the controller calls it), fed by the test."""

    async def stop(self) -> None:
        """Nothing subscribed: nothing to stop."""


class _Bucket:
    def __init__(self) -> None:
        self.watcher = _Watcher(None)

    async def watchall(self) -> _Watcher:
        return self.watcher


async def _cancel_as_an_update_arrives(turns: int) -> asyncio.Task[None]:
    """Starts a heartbeat watch, lets it wait, puts an update in its queue and cancels it ``turns`` turns of the
    event loop later; returns its task."""
    bucket = _Bucket()
    task = asyncio.create_task(watch_heartbeats(bucket, Liveness(5.0), asyncio.Event()))  # type: ignore[arg-type]
    for _ in range(3):
        await asyncio.sleep(0)  # the watch waits for its first update
    bucket.watcher._updates.put_nowait(None)  # the "values present at start delivered" marker
    for _ in range(turns):
        await asyncio.sleep(0)
    task.cancel()
    return task


async def test_the_heartbeat_watch_ends_when_cancelled_as_an_update_arrives() -> None:
    for turns in range(6):  # whichever turn the update's delivery and the cancellation meet on
        task = await _cancel_as_an_update_arrives(turns)
        done, _ = await asyncio.wait([task], timeout=ENDS_WITHIN)
        assert done, f"the watch went on after its cancellation ({turns} turns after the update)"
        assert task.cancelled()


def _wait_for_calls(path: Path) -> list[int]:
    """Returns the lines of ``path`` that call ``asyncio.wait_for`` (or a ``wait_for`` imported from asyncio)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    imported = any(isinstance(node, ast.ImportFrom) and node.module == "asyncio"
                   and any(alias.name == "wait_for" for alias in node.names) for node in ast.walk(tree))
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if (isinstance(func, ast.Attribute) and func.attr == "wait_for" and isinstance(func.value, ast.Name)
                and func.value.id == "asyncio") or (imported and isinstance(func, ast.Name) and func.id == "wait_for"):
            lines.append(node.lineno)
    return lines


def test_no_module_bounds_a_wait_with_asyncio_wait_for() -> None:
    found = [f"{path.relative_to(ROOT)}:{line}" for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
             for line in _wait_for_calls(path)]
    assert not found, f"asyncio.wait_for can drop a cancellation on Python 3.11: use asyncio.timeout ({found})"


def test_the_rule_sees_a_wait_for(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import asyncio\nasync def f(q):\n    return await asyncio.wait_for(q.get(), 1)\n")
    assert _wait_for_calls(module) == [3]
