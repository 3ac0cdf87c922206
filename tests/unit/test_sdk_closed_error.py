"""What a subscription's caller is told when its websocket closes (``services.sdk.subscriptions.closed_error``):
the gateway's own refusals by name, and for a gateway stopping or a connection lost, words a person can act on
(it said ``websocket closed (1012): `` or ``websocket closed (None): ``)."""

from __future__ import annotations

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close

from services.sdk.subscriptions import closed_error


def _closed(code: int | None, reason: str = "") -> ConnectionClosed:
    return ConnectionClosed(None if code is None else Close(code, reason), None)


@pytest.mark.parametrize("code", [1001, 1012])
def test_a_gateway_stopping_or_restarting_is_said_so(code: int) -> None:
    error = closed_error(_closed(code))
    assert error.code == "CONNECTION_CLOSED"
    assert "stopped or restarted" in str(error) and f"close {code}" in str(error) and "try again" in str(error)


def test_a_connection_lost_without_a_close_frame_is_said_so() -> None:
    error = closed_error(_closed(None))
    assert error.code == "CONNECTION_CLOSED" and "lost" in str(error) and "None" not in str(error)


def test_refusals_keep_their_names_and_other_closes_their_code_and_reason() -> None:
    assert closed_error(_closed(1008, "RATE_LIMITED: 30000 requests in 15 minutes")).code == "RATE_LIMITED"
    assert closed_error(_closed(4403, "bad signature")).code == "UNAUTHENTICATED"
    assert closed_error(_closed(1009, "too big")).code == "MESSAGE_TOO_BIG"
    other = closed_error(_closed(1011, "internal error"))
    assert other.code == "CONNECTION_CLOSED" and "1011" in str(other) and "internal error" in str(other)
