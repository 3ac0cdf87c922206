"""A hostile agent's oversized report no longer halts the controller (``python -m services.controller``, real NATS
and PostgreSQL). The report — nearly ``max_payload`` undecodable bytes, left in a ``REPORTS`` stream an older
version declared without ``max_msg_size`` — is dead-lettered truncated (with its size and SHA-256), the other
agents' reports are applied, the controller goes on and stops cleanly. Before, the dead letter (the payload
plus its headers) was over ``max_payload``: the server closed the connection for good, the controller spun at
100 % CPU in faststream's pull loop and never ended, and at each restart the report came back."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import signal
import sys
from pathlib import Path

from nats.js import JetStreamContext

from contracts.status import SessionStatus
from contracts.subjects import (
    HEADER_ERROR, HEADER_ORIGINAL_SHA256, HEADER_ORIGINAL_SIZE, HEADER_TRUNCATED, REPORTS_STREAM,
)
from services.application.agents import Agents
from services.application.sessions import Sessions
from services.common.bus import STREAMS, connect
from tests.integration.test_controller import drained, has_status, send
from tests.integration.test_flow import async_wait_for_letters
from tests.integration.test_report_batches import placed, running
from tests.support.waiting import async_wait_for

WITHIN = 60.0
"""Seconds the controller has to start and settle the reports (a busy 2-core machine)."""


async def test_an_oversized_report_is_dead_lettered_truncated_and_the_others_apply(
        nats_url: str, js: JetStreamContext, apps: tuple[Sessions, Agents], pg_dsn: str, tmp_path: Path) -> None:
    sessions, agents = apps
    kernels = {sid: placed(sessions, agents, sid, "a1") for sid in ("healthy-1", "healthy-2")}
    await js.delete_stream(REPORTS_STREAM)
    [older] = [dataclasses.replace(c, max_msg_size=None) for c in STREAMS if c.name == REPORTS_STREAM]
    await js.add_stream(older)  # as a version without the limit declared it
    nc = await connect(nats_url, "hostile-agent")
    try:
        hostile = b"\xff" + b"x" * (nc.max_payload - 17)
        await nc.jetstream().publish("rp.agent.evil.kernel_running", hostile)
    finally:
        await nc.close()
    for sid, kernel in kernels.items():
        await send(js, running(sid, kernel, "a1")[1])

    log = tmp_path / "controller.log"
    env = {**os.environ, "BERTH_NATS_URL": nats_url, "BERTH_PG_DSN": pg_dsn, "BERTH_HEARTBEAT_TIMEOUT": "600"}
    with log.open("wb") as out:
        controller = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.controller", env=env,
                                                          stdout=out, stderr=out)
    try:
        for sid in kernels:
            await async_wait_for(lambda sid=sid: has_status(sessions, sid, SessionStatus.RUNNING), timeout=WITHIN,
                                 message=f"{sid} did not run; controller log:\n{log.read_text()[-3000:]}")
        [letter] = await async_wait_for_letters(js, "controller", 1)
        await async_wait_for(lambda: drained(js), timeout=WITHIN,
                             message=f"reports left unsettled; controller log:\n{log.read_text()[-3000:]}")
        assert controller.returncode is None, f"the controller ended; its log:\n{log.read_text()[-3000:]}"
    finally:
        if controller.returncode is None:
            controller.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(controller.wait(), 30)
        except TimeoutError:
            controller.kill()
            await controller.wait()
    assert controller.returncode == 0, f"stopped cleanly; its log:\n{log.read_text()[-3000:]}"

    headers = letter.headers or {}
    assert headers[HEADER_TRUNCATED] == "true" and headers[HEADER_ERROR].startswith("DecodeError")
    assert headers[HEADER_ORIGINAL_SIZE] == str(len(hostile))
    assert headers[HEADER_ORIGINAL_SHA256] == hashlib.sha256(hostile).hexdigest()
    assert hostile.startswith(letter.data)
