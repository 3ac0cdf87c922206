"""Every list of an agent's heartbeat is bounded, so that a hostile agent's heartbeat of a million tiny entries is
refused when it is decoded instead of being held and walked by the controller at every beat; a legitimate one
decodes, and the largest one the bounds let through fits the heartbeat bucket's ``max_value_size``."""

from __future__ import annotations

import msgspec
import pytest

from contracts.reports import MAX_HEARTBEAT_KERNELS, MAX_ID_CHARS, AgentHeartbeat
from services.common.bus import HEARTBEAT_MAX_BYTES

HOSTILE_ENTRIES = 1_000_000


def decode(data: bytes) -> AgentHeartbeat:
    return msgspec.json.decode(data, type=AgentHeartbeat)


@pytest.mark.parametrize("field", ["busy_kernels", "app_traffic"])
def test_a_heartbeat_of_a_million_tiny_entries_is_refused_at_decode(field: str) -> None:
    entries: object = [""] * HOSTILE_ENTRIES if field == "busy_kernels" else {
        f"{i:x}": 0 for i in range(HOSTILE_ENTRIES)}
    data = msgspec.json.encode({"agent_id": "evil", "sent_at": 1.0, field: entries})
    with pytest.raises(msgspec.ValidationError, match=f"length <= {MAX_HEARTBEAT_KERNELS} - at `\\$.{field}`"):
        decode(data)


def test_lists_at_their_bound_decode_and_one_more_is_refused() -> None:
    kernels = [f"{i:04d}-k0" for i in range(MAX_HEARTBEAT_KERNELS)]
    beat = AgentHeartbeat(agent_id="a1", sent_at=1.5, busy_kernels=kernels, app_traffic=dict.fromkeys(kernels, 2.5))
    assert decode(msgspec.json.encode(beat)) == beat
    for over in ({"busy_kernels": [*kernels, "one-more"]}, {"app_traffic": {**beat.app_traffic, "one-more": 1.0}}):
        with pytest.raises(msgspec.ValidationError):
            decode(msgspec.json.encode({"agent_id": "a1", "sent_at": 1.5, **over}))


def test_the_largest_heartbeat_of_kernel_ids_fits_the_bucket() -> None:
    """Kernel ids are subject tokens (``io.kernel.<kernel_id>...``): at most ``MAX_ID_CHARS`` one-byte characters."""
    kernels = [f"{i:04d}".ljust(MAX_ID_CHARS, "k") for i in range(MAX_HEARTBEAT_KERNELS)]
    beat = AgentHeartbeat(agent_id="a" * MAX_ID_CHARS, sent_at=-1.7976931348623157e308, busy_kernels=kernels,
                          app_traffic=dict.fromkeys(kernels, -1.7976931348623157e308))
    data = msgspec.json.encode(beat)
    assert decode(data) == beat
    assert len(data) <= HEARTBEAT_MAX_BYTES, f"{len(data)} bytes"
