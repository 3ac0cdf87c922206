"""A NATS connection's outage is one warning and one line when it ends, not a traceback per attempt."""

from __future__ import annotations

import logging

import nats.errors
import pytest

from services.common.bus_outages import OutageLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_an_outage_is_logged_once_and_its_end_with_its_length(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    outages = OutageLog("berth-relay", clock)
    caplog.set_level(logging.DEBUG, logger="services.common.bus_outages")
    await outages.error(nats.errors.UnexpectedEOF())
    for _ in range(50):  # five attempts a second for ten seconds
        await outages.error(ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 4222)"))
    clock.now += 10.0
    await outages.reconnected()
    loud = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    assert loud == [
        ("WARNING", "berth-relay: NATS unreachable (UnexpectedEOF: nats: unexpected EOF); reconnecting until it is back"),
        ("INFO", "berth-relay: NATS reachable again after 10.0 s"),
    ]
    assert not any(r.exc_info for r in caplog.records)
    caplog.clear()
    await outages.error(OSError("again"))
    assert [r.levelname for r in caplog.records] == ["WARNING"], "the next outage is logged again"


async def test_an_error_that_is_no_outage_stays_an_error(caplog: pytest.LogCaptureFixture) -> None:
    outages = OutageLog("berth-gateway")
    await outages.error(nats.errors.SlowConsumerError(subject="berth.events.x", reply="", sid=3, sub=None))  # type: ignore[arg-type]
    assert [(r.levelname, r.exc_info) for r in caplog.records] == [("ERROR", None)]
    assert "SlowConsumerError" in caplog.records[0].getMessage()


async def test_connect_installs_it() -> None:
    options = OutageLog("x").callbacks()
    assert set(options) == {"error_cb", "reconnected_cb"}
