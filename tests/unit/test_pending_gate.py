"""``PendingGate``: a keypair's limited enqueues take turns; other keypairs do not wait; nothing is kept
once no request holds or awaits a turn."""

from __future__ import annotations

import asyncio

from services.gateway.pending_gate import PendingGate


async def test_a_keypair_s_requests_take_turns_and_others_do_not_wait() -> None:
    gate = PendingGate()
    order: list[str] = []
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with gate.turn("ak-1"):
            order.append("first in")
            first_in.set()
            await release.wait()
            order.append("first out")

    async def second() -> None:
        await first_in.wait()
        async with gate.turn("ak-1"):
            order.append("second in")

    async def other() -> None:
        await first_in.wait()
        async with gate.turn("ak-2"):
            order.append("other in")

    tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
    await asyncio.wait_for(other(), 10)  # not behind ak-1's turn
    assert len(gate) == 1 and order == ["first in", "other in"]
    release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert order == ["first in", "other in", "first out", "second in"]
    assert len(gate) == 0


async def test_a_turn_ended_by_an_error_or_a_cancel_is_given_back() -> None:
    gate = PendingGate()
    try:
        async with gate.turn("ak-1"):
            raise ValueError("refused")
    except ValueError:
        pass
    holder_in = asyncio.Event()

    async def holder() -> None:
        async with gate.turn("ak-1"):
            holder_in.set()
            await asyncio.Event().wait()

    held = asyncio.create_task(holder())
    await holder_in.wait()
    waiting = asyncio.create_task(asyncio.wait_for(gate.turn("ak-1").__aenter__(), 60))
    await asyncio.sleep(0)
    waiting.cancel()
    held.cancel()
    await asyncio.gather(held, waiting, return_exceptions=True)
    assert len(gate) == 0
    async with gate.turn("ak-1"):
        assert len(gate) == 1
