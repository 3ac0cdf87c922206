"""Pure parts of the storage data plane: upload reservations per quota scope and byte ranges."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.storage.quota import QuotaError, Reservations
from services.storage.transfer import _byte_range


def test_reservations_of_a_scope_never_exceed_the_room_and_are_released_once():
    r = Reservations()
    r.reserve("u1", "user:a", 60, room=100)
    with pytest.raises(QuotaError):
        r.reserve("u2", "user:a", 41, room=100)
    r.reserve("u3", "user:b", 100, room=100)  # another scope is apart
    r.reserve("u2", "user:a", 40, room=100)
    r.release("u1")
    r.release("u1")
    assert r.reserved("user:a") == 40 and r.reserved("user:b") == 100
    with pytest.raises(QuotaError):
        r.reserve("u4", "user:a", 1, room=0)


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 120), st.booleans()), max_size=30))
def test_reserved_bytes_stay_within_the_room_of_each_accepted_upload(steps):
    r, live = Reservations(), {}
    for i, (length, room, release) in enumerate(steps):
        if release and live:
            r.release(live.popitem()[0])
            continue
        try:
            r.reserve(f"u{i}", "s", length, room)
        except QuotaError:
            continue
        live[f"u{i}"] = length
        assert r.reserved("s") <= room
    assert r.reserved("s") == sum(live.values())


@pytest.mark.parametrize(("header", "size", "span"), [
    ("bytes=0-9", 100, (0, 9)), ("bytes=90-", 100, (90, 99)), ("bytes=-10", 100, (90, 99)),
    ("bytes=95-200", 100, (95, 99)), ("bytes=100-", 100, None), ("bytes=-0", 100, None),
    ("bytes=5-2", 100, None), ("bytes=0-0", 0, None), ("bytes=-500", 100, (0, 99)),
])
def test_single_byte_ranges(header, size, span):
    assert _byte_range(header, size) == span
