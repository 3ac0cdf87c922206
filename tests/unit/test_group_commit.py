"""GroupCommit: concurrent calls are saved in batches, each caller gets its own outcome."""

from __future__ import annotations

import asyncio
import threading

import pytest

from services.application.facade import Facade
from services.application.group_commit import GroupCommit


class Refused(Exception):
    pass


class Saver:
    """``save_many`` that blocks its first batch until released, so that others queue behind it."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, items: list[int]) -> list[int | Exception]:
        if not self.batches:
            self.started.set()
            self.release.wait(30)
        self.batches.append(items)
        return [Refused(f"{i} is odd") if i % 2 else i * 10 for i in items]


async def test_calls_queued_during_a_save_are_saved_together_with_their_own_outcomes() -> None:
    facade, saver = Facade("test-group-commit", 2), Saver()
    committer: GroupCommit[int, int] = GroupCommit(facade, saver, max_batch=100)
    try:
        first = asyncio.create_task(committer.submit(0))
        assert await asyncio.to_thread(saver.started.wait, 30), "the first batch is being saved"
        others = [asyncio.create_task(committer.submit(i)) for i in range(1, 11)]
        await asyncio.sleep(0)  # every other call is queued behind the first save
        saver.release.set()
        assert await first == 0
        results = await asyncio.gather(*others, return_exceptions=True)
        assert [r for r in results if not isinstance(r, Exception)] == [20, 40, 60, 80, 100]
        assert [str(r) for r in results if isinstance(r, Exception)] == [f"{i} is odd" for i in (1, 3, 5, 7, 9)]
        assert sorted(i for batch in saver.batches for i in batch) == list(range(11)), "each call saved once"
        assert saver.batches[1:] == [list(range(1, 11))], "the calls queued during the first save went together"
    finally:
        await committer.close()
        await facade.close()


async def test_a_failed_batch_fails_each_of_its_calls_and_the_next_batch_still_runs() -> None:
    facade = Facade("test-group-commit", 1)
    calls = {"n": 0}

    def save_many(items: list[int]) -> list[int]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("database went away")
        return items

    committer: GroupCommit[int, int] = GroupCommit(facade, save_many)
    try:
        with pytest.raises(OSError, match="went away"):
            await committer.submit(1)
        assert await committer.submit(2) == 2
    finally:
        await committer.close()
        await facade.close()


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError):
        GroupCommit(Facade("x"), lambda items: items, max_batch=0)
