"""The folder read models on a real PostgreSQL: an invitation withdrawn (explicitly, or superseded by
a share or an unshare concerning its invitee) leaves the pending ones, so no reader offers it to be
accepted; it is kept as ``withdrawn``, as answered ones are, and a rebuild gives the same rows."""

from __future__ import annotations

import asyncio

from psycopg_pool import AsyncConnectionPool

from contracts import vfolder as vf
from contracts.envelope import Event
from projections.queries import vfolders as q
from projections.rebuild import dump_read_models, reset_read_models
from tests.support.projections import Builder, Feeder, build, feed, read_models  # noqa: F401

FOLDER = "vfolder_" + "b" * 32
RO, RW = vf.VFolderPermission.RO, vf.VFolderPermission.RW


def history(build: Builder) -> list[Event]:
    """Alice invites bob rw and carol ro, shares the folder with bob ro (which ends bob's invitation),
    unshares him, and withdraws carol's invitation."""
    return [
        build(vf.VFolderCreated, FOLDER, name="work", volume="local", owner_kind=vf.OwnerKind.USER, owner="alice",
              domain="default", quota_scope="user:alice", by="alice"),
        build(vf.VFolderProvisioned, FOLDER),
        build(vf.VFolderInvited, FOLDER, invitation_id="inv1", invitee="bob", permission=RW, by="alice"),
        build(vf.VFolderInvited, FOLDER, invitation_id="inv2", invitee="carol", permission=RO, by="alice"),
        build(vf.VFolderShared, FOLDER, user="bob", permission=RO, by="alice"),
        build(vf.VFolderInvitationWithdrawn, FOLDER, invitation_id="inv1", invitee="bob",
              reason=vf.WithdrawalReason.SHARED, by="alice"),
        build(vf.VFolderUnshared, FOLDER, user="bob", by="alice"),
        build(vf.VFolderInvitationWithdrawn, FOLDER, invitation_id="inv2", invitee="carol",
              reason=vf.WithdrawalReason.WITHDRAWN, by="alice"),
    ]


def test_withdrawn_invitations_leave_the_pending_ones(feed: Feeder, build: Builder, pg_dsn: str) -> None:
    events = history(build)
    result = feed.apply(*events)
    assert (result.applied, result.rejected) == (len(events), 0)
    assert feed.rows("SELECT invitation_id, invitee, permission, state FROM vfolder_invitations"
                     " ORDER BY invitation_id") == [("inv1", "bob", "rw", "withdrawn"),
                                                    ("inv2", "carol", "ro", "withdrawn")]
    assert feed.rows("SELECT user_name FROM vfolder_shares WHERE folder_id = %s", FOLDER) == []
    assert feed.row("SELECT version, last_position FROM vfolders WHERE folder_id = %s", FOLDER) == (8, 8)

    async def read() -> None:
        async with AsyncConnectionPool(pg_dsn, open=False, kwargs={"autocommit": True}) as pool:
            assert await q.invitations_for(pool, "bob") == []
            assert await q.invitations_for(pool, "carol") == []
            (everything,) = await q.invitations_for(pool, "bob", state=None)
            assert (everything.invitation_id, everything.state) == ("inv1", "withdrawn")

    asyncio.run(read())


def test_a_pending_invitation_is_listed_until_withdrawn(feed: Feeder, build: Builder, pg_dsn: str) -> None:
    events = history(build)
    feed.apply(*events[:4])

    async def pending(user: str) -> list[str]:
        async with AsyncConnectionPool(pg_dsn, open=False, kwargs={"autocommit": True}) as pool:
            return [row.invitation_id for row in await q.invitations_for(pool, user)]

    assert asyncio.run(pending("bob")) == ["inv1"]
    feed.apply(*events[4:6])
    assert asyncio.run(pending("bob")) == []


def test_a_rebuild_gives_the_same_rows(feed: Feeder, build: Builder) -> None:
    deliveries = [feed.delivery(e) for e in history(build)]
    feed.apply(*deliveries)
    before = dump_read_models(feed.conn)
    reset_read_models(feed.conn)
    feed.apply(*deliveries)
    assert dump_read_models(feed.conn) == before and len(before["vfolder_invitations"]) == 2
