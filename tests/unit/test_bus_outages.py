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
    await outages.error(nats.errors.BadSubjectError())
    assert [(r.levelname, r.exc_info) for r in caplog.records] == [("ERROR", None)]
    assert "BadSubjectError" in caplog.records[0].getMessage()


def _dropped(subject: str) -> nats.errors.SlowConsumerError:
    return nats.errors.SlowConsumerError(subject=subject, reply="", sid=3, sub=None)  # type: ignore[arg-type]


async def test_messages_dropped_by_a_slow_consumer_are_counted_not_logged_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """nats-py reports every message a bounded subscription drops: a line each was thousands a second while runs
    flooded the gateway. The first is a line; the next are counted, one line per interval while they go on."""
    clock = Clock()
    outages = OutageLog("berth-gateway", clock)
    for n in range(5000):
        await outages.error(_dropped(f"io.agent.a.k.run{n % 4}"))
    assert [(r.levelname, r.exc_info) for r in caplog.records] == [("ERROR", None)]
    assert "io.agent.a.k.run0" in caplog.records[0].getMessage()
    clock.now += 10.0
    outages.report_drops()  # what the interval's timer calls
    assert len(caplog.records) == 2
    assert caplog.records[1].getMessage() == ("berth-gateway: NATS slow consumer: 4999 more messages dropped in 10 s, "
                                              "of 4 subjects (io.agent.a.k.run0, io.agent.a.k.run1, "
                                              "io.agent.a.k.run2 and 1 more)")
    outages.report_drops()  # none since: nothing to say, and the next drop is logged at once
    assert len(caplog.records) == 2
    await outages.error(_dropped("io.agent.a.k.again"))
    assert len(caplog.records) == 3 and "io.agent.a.k.again" in caplog.records[2].getMessage()


async def test_connect_installs_it() -> None:
    options = OutageLog("x").callbacks()
    assert set(options) == {"error_cb", "reconnected_cb"}
