"""``services.common.backlog.Backlog``: asyncio, no I/O (the run outputs of the gateway and the CLI are two)."""

from __future__ import annotations

from services.common.backlog import Backlog


def backlog(limit: int) -> Backlog[str]:
    return Backlog(limit, lambda item: None if item == "end" else len(item), lambda dropped, _: f"<{dropped}>",
                   lambda item: item == "end")


async def test_close_ends_the_iteration_after_what_came_before() -> None:
    items = backlog(100)
    items.put("ab")
    items.close()
    assert [item async for item in items] == ["ab"]


async def test_what_is_dropped_is_told_before_the_next_item_kept_and_the_last_is_never_dropped() -> None:
    items = backlog(3)
    for item in ("ab", "cd", "e", "fgh", "end"):
        items.put(item)
    assert [item async for item in items] == ["ab", "<2>", "e", "<3>", "end"]
    assert items.dropped == 5
