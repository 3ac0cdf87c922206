"""Serves execution and log requests for the kernels of this agent, over core NATS.

``exec.agent.<id>``: an ``ExecRequest`` is answered with ``ExecAccepted`` (ok, or why not),
then the run goes to the kernel runner's Unix socket and each output chunk is published to
``io.agent.<agent_id>.<kernel_id>.<run_id>`` as an ``ExecChunk`` (seq 0, 1, ...), the last one as
``ExecDone``. A request with ``interrupt`` set interrupts the run ``run_id``; one with ``probe`` set is
answered ok when the run ``run_id`` is streaming through this agent (a restarted agent has lost the runs
of the one before: their streams cannot be taken up again).
``logs.agent.<id>``: a ``LogsRequest`` is answered with the kernel's log as UTF-8 text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path

import msgspec
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from contracts.execution import (
    ExecAccepted,
    ExecChunk,
    ExecDone,
    ExecRequest,
    LogsRequest,
    exec_subject,
    io_subject,
    logs_subject,
)
from services.agent.backends.base import KernelBackend
from services.agent.runner_socket import CONNECT_TIMEOUT, open_runner

__all__ = ["ExecServer", "open_runner"]

log = logging.getLogger(__name__)

async def _send(writer: asyncio.StreamWriter, message: dict) -> None:
    writer.write((json.dumps(message) + "\n").encode())
    await writer.drain()


class ExecServer:
    """Answers ``exec.agent.<id>`` and ``logs.agent.<id>`` for the kernels of ``backend``."""

    def __init__(self, nc: Nats, agent_id: str, backend: KernelBackend) -> None:
        self._nc = nc
        self._agent_id = agent_id
        self._backend = backend
        self._subs: list[Subscription] = []
        self._runs: dict[str, tuple[str, asyncio.Task[None]]] = {}
        """Each run streaming now: its kernel and its task."""

    async def start(self) -> None:
        """Subscribes to the agent's exec and logs subjects."""
        self._subs.append(await self._nc.subscribe(exec_subject(self._agent_id), cb=self._on_exec))
        self._subs.append(await self._nc.subscribe(logs_subject(self._agent_id), cb=self._on_logs))

    def busy_kernels(self) -> list[str]:
        """Returns the kernels with a run streaming through this server now, by id."""
        return sorted({kernel_id for kernel_id, _ in self._runs.values()})

    async def stop(self) -> None:
        """Unsubscribes and stops streaming (the runs themselves go on in the kernels)."""
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
        tasks = [task for _, task in self._runs.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _reply(self, msg: Msg, ok: bool, error: str | None = None) -> None:
        if msg.reply:
            await self._nc.publish(msg.reply, msgspec.json.encode(ExecAccepted(ok=ok, error=error)))

    async def _on_exec(self, msg: Msg) -> None:
        try:
            request = msgspec.json.decode(msg.data, type=ExecRequest)
            io_subject(self._agent_id, request.kernel_id, request.run_id)
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
            await self._reply(msg, False, f"bad exec request: {exc}")
            return
        path = self._backend.runner_socket(request.kernel_id)
        if path is None or not path.exists():
            await self._reply(msg, False, f"kernel {request.kernel_id} does not run on agent {self._agent_id}")
            return
        if request.interrupt:
            await self._reply(msg, *await self._interrupt(path, request.run_id))
            return
        if request.probe:
            streaming = request.run_id in self._runs
            await self._reply(msg, streaming, None if streaming else f"run {request.run_id} is not streaming here")
            return
        if request.run_id in self._runs:
            await self._reply(msg, False, f"run {request.run_id} is already running")
            return
        try:
            reader, writer = await open_runner(path)
            run = {"op": "run", "run_id": request.run_id, "mode": request.mode.value, "code": request.code,
                   "stdin": request.stdin, "argv": request.argv, "detach": request.detach}
            await _send(writer, run)
        except (OSError, asyncio.TimeoutError) as exc:
            await self._reply(msg, False, f"cannot reach the runner of kernel {request.kernel_id}: {exc}")
            return
        task = asyncio.create_task(self._stream(request, reader, writer), name=f"exec-{request.run_id}")
        self._runs[request.run_id] = request.kernel_id, task
        task.add_done_callback(lambda _: self._runs.pop(request.run_id, None))
        await self._reply(msg, True)

    async def _interrupt(self, path: Path, run_id: str) -> tuple[bool, str | None]:
        try:
            reader, writer = await open_runner(path)
            try:
                await _send(writer, {"op": "interrupt", "run_id": run_id})
                answer = json.loads(await asyncio.wait_for(reader.readline(), CONNECT_TIMEOUT))
            finally:
                writer.close()
        except (OSError, asyncio.TimeoutError, ValueError) as exc:
            return False, f"cannot reach the runner: {exc}"
        return (True, None) if answer.get("ok") else (False, f"run {run_id} is not running")

    async def _stream(self, request: ExecRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        subject = io_subject(self._agent_id, request.kernel_id, request.run_id)
        seq = 0
        try:
            while True:
                line = await reader.readline()
                if not line:
                    await self._publish(subject, ExecChunk(seq=seq, stream="stderr", data="the kernel runner went away\n"))
                    await self._publish(subject, ExecDone(seq=seq + 1, exit_code=1, duration_ms=0))
                    return
                message = json.loads(line)
                kind = message.get("kind")
                if kind in ("stdout", "stderr"):
                    await self._publish(subject, ExecChunk(seq=seq, stream=kind, data=message["data"]))
                elif kind == "done":
                    done = ExecDone(seq=seq, exit_code=int(message["exit_code"]),
                                    duration_ms=int(message["duration_ms"]))
                    await self._publish(subject, done)
                    return
                elif kind == "error":
                    await self._publish(subject, ExecChunk(seq=seq, stream="stderr", data=f"{message.get('message')}\n"))
                    await self._publish(subject, ExecDone(seq=seq + 1, exit_code=1, duration_ms=0))
                    return
                else:
                    continue
                seq += 1
        except (OSError, ValueError, KeyError) as exc:
            log.warning("run %s of kernel %s: lost the runner stream: %s", request.run_id, request.kernel_id, exc)
            await self._publish(subject, ExecDone(seq=seq, exit_code=1, duration_ms=0))
        finally:
            writer.close()

    async def _publish(self, subject: str, item: ExecChunk | ExecDone) -> None:
        await self._nc.publish(subject, msgspec.json.encode(item))

    async def _on_logs(self, msg: Msg) -> None:
        try:
            request = msgspec.json.decode(msg.data, type=LogsRequest)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            text = f"bad logs request: {exc}"
        else:
            try:
                text = await self._backend.logs(request.kernel_id)
            except ValueError as exc:  # an id that is no plain token never becomes a path
                text = f"bad logs request: {exc}"
            if request.tail is not None and request.tail >= 0:
                text = "".join(text.splitlines(keepends=True)[-request.tail:]) if request.tail else ""
        data = text.encode()
        limit = max(1024, self._nc.max_payload - 4096)
        if len(data) > limit:
            data = data[-limit:]
        if msg.reply:
            await self._nc.publish(msg.reply, data)
