"""The per-keypair token bucket (``services.gateway.rate_limit``), on a fake clock, and the subscription
slots (the limits cache: ``test_keypair_limits.py``)."""

from __future__ import annotations

from services.gateway.rate_limit import RateLimiter
from services.gateway.subscription_slots import SubscriptionSlots


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_keypair_bursts_its_window_then_goes_on_at_its_average_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(window=900.0, clock=clock)
    assert all(limiter.take("ak", 90).admitted for _ in range(90))
    refused = limiter.take("ak", 90)
    assert not refused.admitted and refused.retry_after == 10  # 90 per 900 s: one every 10 s
    clock.now += 9.9
    assert not limiter.take("ak", 90).admitted
    clock.now += 0.2
    assert limiter.take("ak", 90).admitted
    assert not limiter.take("ak", 90).admitted
    assert limiter.take("other", 90).admitted, "each keypair has its own bucket"


def test_zero_is_no_limit_and_a_lowered_limit_applies_at_once() -> None:
    limiter = RateLimiter(clock=Clock())
    assert all(limiter.take("ak", 0).admitted for _ in range(1000))
    assert limiter.take("ak", 5).admitted  # 4 left of 5
    assert limiter.take("ak", 1).admitted  # the policy lowered to 1: at most 1 left, taken
    assert not limiter.take("ak", 1).admitted


def test_buckets_are_bounded() -> None:
    limiter = RateLimiter(size=3, clock=Clock())
    for key in "abcdef":
        limiter.take(key, 1)
    assert len(limiter._buckets) == 3  # noqa: SLF001 - the bound is the point


def test_subscription_slots_are_counted_per_keypair_and_given_back() -> None:
    slots = SubscriptionSlots()
    assert slots.acquire("ak", 2) and slots.acquire("ak", 2)
    assert not slots.acquire("ak", 2)
    assert slots.acquire("other", 2)
    slots.release("ak")
    assert slots.open_count("ak") == 1 and slots.acquire("ak", 2)
    assert all(slots.acquire("free", 0) for _ in range(100))
