"""``subscription_slot(info)``: what every subscription resolver holds while it runs, so that a
keypair has at most its policy's ``max_concurrent_subscriptions`` open (``SubscriptionSlots``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from services.gateway.context import Info, caller
from services.gateway.errors import SUBSCRIPTION_LIMIT, GatewayError

__all__ = ["subscription_slot"]


@asynccontextmanager
async def subscription_slot(info: Info) -> AsyncIterator[None]:
    """Holds one of the caller's subscription slots for the body; SUBSCRIPTION_LIMIT when none is free. The
    limits are those the operation's rate limit read a moment before (``GatewayContext.limits``), else read now."""
    principal = caller(info)
    resources = info.context.resources
    limits = info.context.limits or await resources.current_limits(principal)
    limit = limits.max_concurrent_subscriptions
    if not resources.subscription_slots.acquire(principal.access_key, limit):
        raise GatewayError(
            SUBSCRIPTION_LIMIT, f"too many subscriptions: your resource policy allows {limit} open at once;"
            " end one (or close its connection) first")
    try:
        yield
    finally:
        resources.subscription_slots.release(principal.access_key)
