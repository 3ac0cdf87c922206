"""The folder use cases on real PostgreSQL: creation with its name claim (one live folder per owner
and name, also under concurrent creations), ``max_vfolder_count`` held under concurrent creations,
rename, the storage reports (idempotent, a duplicate after the bus's dedup window included), the read
models they feed, and the scope usage query."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import uuid
from collections.abc import Iterator

import msgspec
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from contracts.storage_reports import (
    FileUploadedReport,
    FolderProvisionedReport,
    FolderPurgedReport,
    UsageMeasuredReport,
)
from contracts.vfolder import VFolderStatus
from domain.errors import AlreadyExistsError, InvalidRequestError, NotFoundError
from domain.vfolder.decide import NewFolder
from domain.vfolder.access import Actor
from projections.queries import vfolders as q
from services.application.context import make_context
from services.application.vfolders import VFolders, report_context_id
from services.gateway.auth.keypairs import create_keypair, ensure_admin_keypair
from tests.support.gateway import SCHEMA, create_user
from tests.support.tenancy import catch_up


@pytest.fixture
def world(pg_dsn: str) -> Iterator[tuple[VFolders, str]]:
    """Folders use cases and alice's access key (domain and project default)."""
    ensure_admin_keypair(pg_dsn)
    create_user(pg_dsn, "alice")
    create_user(pg_dsn, "bob")
    alice, _ = create_keypair(pg_dsn, "alice")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(SCHEMA.read_text())
    app = VFolders(pg_dsn)
    yield app, alice
    app.close()


def report(cls: type, folder_id: str, **fields: object) -> object:
    return cls(report_id=uuid.uuid4().hex, volume="local", folder_id=folder_id, observed_at=dt.datetime.now(dt.UTC),
               **fields)


def apply(app: VFolders, rep: object) -> int | None:
    return app.apply_report(rep, make_context("storage:local", causation_id=report_context_id(rep)))  # type: ignore[arg-type]


def mine(name: str = "data") -> NewFolder:
    return NewFolder(name=name, volume="local", owner_kind="user", owner="alice", domain="default")


def test_create_report_and_read(world: tuple[VFolders, str], pg_dsn: str) -> None:
    app, key = world
    actor = app.actor(key)
    folder_id, _ = app.create(actor, mine(), make_context(key), owned=0)
    assert app.get(folder_id).status is VFolderStatus.PROVISIONING  # type: ignore[union-attr]
    with pytest.raises(AlreadyExistsError, match="'data'"):
        app.create(actor, mine(), make_context(key), owned=1)
    assert app.find("user", "alice", "data").id == folder_id  # type: ignore[union-attr]

    provisioned = report(FolderProvisionedReport, folder_id)
    assert apply(app, provisioned) is not None
    assert apply(app, provisioned) is None  # the same report again: nothing
    uploaded = report(FileUploadedReport, folder_id, path="a/b.txt", size=5, sha256="0" * 64, by="alice")
    assert apply(app, uploaded) is not None
    assert apply(app, uploaded) is None  # remembered by its id, past any dedup window
    assert apply(app, report(UsageMeasuredReport, folder_id, bytes=5, files=1)) is not None
    assert apply(app, report(UsageMeasuredReport, folder_id, bytes=5, files=1)) is None  # unchanged
    with pytest.raises(InvalidRequestError, match="volume"):
        app.apply_report(FolderProvisionedReport(report_id="x", volume="other", folder_id=folder_id,
                                                 observed_at=dt.datetime.now(dt.UTC)), make_context("s"))
    with pytest.raises(NotFoundError):
        apply(app, report(FolderProvisionedReport, "vfolder_" + "0" * 32))
    with pytest.raises(InvalidRequestError):
        apply(app, report(FileUploadedReport, folder_id, path="../x", size=1, sha256="0" * 64, by="alice"))

    app.rename(folder_id, "renamed", actor, make_context(key))
    other, _ = app.create(actor, mine("data"), make_context(key), owned=1)  # the old name is free again
    app.trash(folder_id, actor, make_context(key))
    app.purge(folder_id, actor, make_context(key))
    assert apply(app, report(FolderPurgedReport, folder_id)) is not None
    app.create(actor, mine("renamed"), make_context(key), owned=1)  # a purged folder's name is free
    catch_up(pg_dsn)

    async def read() -> None:
        async with AsyncConnectionPool(pg_dsn, open=False, kwargs={"autocommit": True}) as pool:
            scope = q.FolderScope(user="alice", domain="default", projects=["default"])
            rows = await q.list_folders(pool, scope)
            assert sorted((r.name, r.status) for r in rows) == [("data", "provisioning"), ("renamed", "provisioning")]
            purged = await q.folder(pool, scope, folder_id)
            assert purged is not None and (purged.status, purged.usage_bytes) == ("purged", 0)
            assert await q.owned_count(pool, "alice") == 2
            assert await q.list_folders(pool, q.FolderScope(user="bob", domain="default")) == []
            (usage,) = await q.storage_usage(pool, ["user:alice"])
            assert (usage.folders, usage.limit_bytes) == (2, 0)
            assert (await q.folders_named(pool, scope, "data"))[0].folder_id == other

    asyncio.run(read())


def test_concurrent_creations_of_one_name_record_one_folder(world: tuple[VFolders, str], pg_dsn: str) -> None:
    app, key = world
    actor = app.actor(key)
    outcomes = _create_at_once(pg_dsn, actor, key, ["race"] * 4, AlreadyExistsError)
    created = [o for o in outcomes if isinstance(o, tuple)]
    assert len(outcomes) == 4 and len(created) == 1
    with psycopg.connect(pg_dsn) as conn:
        count = conn.execute("SELECT count(*) FROM berth_events WHERE topic = 'vfolder.created'").fetchone()[0]
    assert count == 1


def test_concurrent_creations_never_pass_max_vfolder_count(world: tuple[VFolders, str], pg_dsn: str) -> None:
    """Each creation is given the same stale read-model count (0); the count in the store decides."""
    app, key = world
    actor = msgspec.structs.replace(app.actor(key), max_vfolder_count=2)
    outcomes = _create_at_once(pg_dsn, actor, key, [f"f{i}" for i in range(4)], InvalidRequestError)
    created = [o[0] for o in outcomes if isinstance(o, tuple)]
    refused = [str(o) for o in outcomes if isinstance(o, InvalidRequestError)]
    assert (len(created), len(refused)) == (2, 2), outcomes
    assert all("you own 2 folders" in r and "max_vfolder_count 2" in r for r in refused), refused

    apply(app, report(FolderProvisionedReport, created[0]))
    app.trash(created[0], actor, make_context(key))
    with pytest.raises(InvalidRequestError):  # a trashed folder still counts
        app.create(actor, mine("again"), make_context(key), owned=0)
    app.purge(created[0], actor, make_context(key))
    app.create(actor, mine("again"), make_context(key), owned=0)  # a purged one does not
    with pytest.raises(InvalidRequestError):
        app.create(actor, mine("more"), make_context(key), owned=0)


def test_a_busy_folder_is_loaded_from_its_snapshot(world: tuple[VFolders, str], pg_dsn: str) -> None:
    app, key = world
    folder_id, _ = app.create(app.actor(key), mine("busy"), make_context(key), owned=0)
    apply(app, report(FolderProvisionedReport, folder_id))
    for i in range(450):  # uploads: the history grows with the content
        apply(app, report(FileUploadedReport, folder_id, path=f"f{i}", size=1, sha256="0" * 64, by="alice"))
    with psycopg.connect(pg_dsn) as conn:
        (version,) = conn.execute("SELECT max(version) FROM berth_events_snapshots WHERE aggregate_id = %s",
                                  (folder_id,)).fetchone()
    assert version >= 400
    with VFolders(pg_dsn) as fresh:
        assert fresh.get(folder_id) == app.get(folder_id)


def _create_at_once(pg_dsn: str, actor: Actor, key: str, names: list[str],
                    refusal: type[Exception]) -> list[object]:
    """Creates folder ``names[i]`` from its own application (process-like) in its own thread, all
    released together; returns each outcome: the creation's result or the ``refusal`` raised."""
    apps = [VFolders(pg_dsn) for _ in names]
    outcomes: list[object] = []
    barrier = threading.Barrier(len(apps))

    def run(a: VFolders, name: str) -> None:
        barrier.wait()
        try:
            outcomes.append(a.create(actor, mine(name), make_context(key), owned=0))
        except refusal as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=run, args=(a, name)) for a, name in zip(apps, names)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for a in apps:
        a.close()
    return outcomes
