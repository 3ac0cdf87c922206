"""The ``kernels`` read model, fed hand-built events through the runner on a real PostgreSQL."""

from __future__ import annotations

from contracts import session as ss
from contracts.status import Reason
from tests.support.projections import Builder, Feeder, at, build, feed, read_models, slots  # noqa: F401

COLUMNS = "kernel_id, session_id, cluster_role, cluster_idx, agent_id, status, container_id, exit_code"


def test_requested_kernels_are_pending_with_their_slots(feed: Feeder, build: Builder) -> None:
    feed.apply(build.requested("s1", ("k1", slots("1", "1024")), ("k2", slots("2", "2048", cuda_shares="0.5"))))
    assert feed.rows(f"SELECT {COLUMNS} FROM kernels ORDER BY kernel_id") == [
        ("k1", "s1", "main", 0, None, "PENDING", None, None),
        ("k2", "s1", "sub", 1, None, "PENDING", None, None),
    ]
    assert feed.row("SELECT slots, created_at, updated_at FROM kernels WHERE kernel_id = 'k2'") == (
        {"cpu": "2", "mem": "2048", "cuda.shares": "0.5"},
        at(1),
        at(1),
    )


def test_kernels_follow_placement_and_lifecycle(feed: Feeder, build: Builder) -> None:
    feed.apply(
        build.requested("s1", ("k1", slots("1", "1024")), ("k2", slots("1", "1024"))),
        build.scheduled("s1", k1="a1", k2="a2"),
    )
    assert feed.rows("SELECT kernel_id, agent_id, status FROM kernels ORDER BY 1") == [
        ("k1", "a1", "SCHEDULED"),
        ("k2", "a2", "SCHEDULED"),
    ]
    feed.apply(
        build(ss.KernelPreparing, "s1", kernel_id="k1"),
        build(ss.KernelCreating, "s1", kernel_id="k2"),
    )
    assert feed.rows("SELECT kernel_id, status, updated_at FROM kernels ORDER BY 1") == [
        ("k1", "PREPARING", at(3)),
        ("k2", "CREATING", at(4)),
    ]
    feed.apply(
        build(ss.KernelStarted, "s1", kernel_id="k1", container_id="c-1"),
        build(ss.KernelTerminated, "s1", kernel_id="k2", exit_code=None, reason=Reason.FAILED_TO_START),
        build(ss.KernelTerminated, "s1", kernel_id="k1", exit_code=137, reason=Reason.OOM_KILLED),
    )
    assert feed.rows("SELECT kernel_id, status, container_id, exit_code FROM kernels ORDER BY 1") == [
        ("k1", "TERMINATED", "c-1", 137),
        ("k2", "ERROR", None, None),
    ]


def test_event_for_unknown_kernel_is_dead_lettered(feed: Feeder, build: Builder) -> None:
    feed.apply(build.requested("s1", ("k1", slots("1", "1024"))))
    result = feed.apply(build(ss.KernelPreparing, "s1", kernel_id="nope"))
    assert result.rejected == 1 and "no kernel nope" in feed.rejected[0].error
    assert feed.row("SELECT status, version FROM sessions") == ("PENDING", 1)


def test_duplicate_kernel_id_across_sessions_is_dead_lettered(feed: Feeder, build: Builder) -> None:
    feed.apply(build.requested("s1", ("k1", slots("1", "1024"))))
    result = feed.apply(build.requested("s2", ("k1", slots("1", "1024"))))
    assert result.rejected == 1 and "UniqueViolation" in feed.rejected[0].error
    assert feed.rows("SELECT session_id FROM sessions") == [("s1",)]
