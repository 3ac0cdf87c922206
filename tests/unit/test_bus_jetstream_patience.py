"""``ensure_streams(js, patience=...)``: a JetStream that does not answer yet at ``berth up``'s start (a 3-node
cluster still electing its leader) is waited for, not a failed start; other errors are raised at once. CI saw
``berth up`` exit 1 on a fresh cluster: its ``add_stream`` timed out (the fault suite's "nats cluster node lost")."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import nats.errors
import nats.js.errors
import pytest
from nats.js.api import StreamConfig

from services.common import bus


class JetStream:
    """Answers ``add_stream`` only after ``failures`` errors."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or nats.errors.TimeoutError()
        self.created: list[str] = []

    async def add_stream(self, config: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise self.error
        self.created.append(config.name)

    async def key_value(self, bucket: str) -> str:
        return bucket

    async def stream_info(self, stream: str) -> Any:  # the heartbeat bucket's, already as it should be
        return SimpleNamespace(config=StreamConfig(name=stream, max_msg_size=bus.HEARTBEAT_MAX_BYTES,
                                                   allow_rollup_hdrs=False))


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bus, "backoff", lambda tries: 0.001)


async def test_a_jetstream_that_answers_late_is_waited_for(caplog: pytest.LogCaptureFixture) -> None:
    js = JetStream(failures=5)
    await bus.ensure_streams(js, patience=60)  # type: ignore[arg-type]
    assert js.created == [config.name for config in bus.STREAMS]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("JetStream does not answer yet (TimeoutError")


async def test_without_patience_the_first_error_is_raised() -> None:
    with pytest.raises(nats.errors.TimeoutError):
        await bus.ensure_streams(JetStream(failures=1))  # type: ignore[arg-type]


async def test_patience_runs_out() -> None:
    with pytest.raises(nats.js.errors.ServiceUnavailableError):
        await bus.ensure_streams(  # type: ignore[arg-type]
            JetStream(failures=10**9, error=nats.js.errors.ServiceUnavailableError()), patience=0.05)


async def test_an_error_that_is_no_outage_is_raised_at_once() -> None:
    js = JetStream(failures=1, error=ValueError("BERTH_STREAM_REPLICAS must be ..."))
    with pytest.raises(ValueError):
        await bus.ensure_streams(js, patience=60)  # type: ignore[arg-type]
    assert js.failures == 0 and js.created == []
