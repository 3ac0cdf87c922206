"""The gateway's file operations against the real storage service (its data plane served by uvicorn,
a POSIX volume under a temp dir): vfolderMkdir, vfolderFiles, vfolderMove, vfolderDeleteFiles with
the tokens the gateway mints, and a download through requestDownload's ticket; who may do what (a
reader lists and downloads but neither writes nor deletes; wd deletes), a traversal refused before
the storage service is asked, and the reports the storage service sends turned into folder events by
the controller."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from nats.js import JetStreamContext

from contracts.storage_reports import FolderProvisionedReport
from services.application.context import make_context
from services.application.vfolders import VFolders, report_context_id
from services.common.settings import Settings
from services.controller.main import run_controller
from services.gateway.app import GatewayApp
from services.gateway.main import build_app
from services.sdk.client import BerthClient
from tests.support.gateway import Keys, client_for, keys, read_models  # noqa: F401 - fixtures
from tests.support.publish import service_tasks
from tests.support.storage import RunningStorage, running_storage
from tests.support.tenancy import catch_up, refused
from tests.support.waiting import async_wait_for

CREATE = "mutation($i: CreateVFolderInput!) { createVFolder(input: $i) { id } }"
SHARE = "mutation($f: String!, $u: String!, $p: String!) { shareVFolder(folder: $f, user: $u, permission: $p) { id } }"
FILES = "query($f: String!, $p: String!) { vfolderFiles(folder: $f, path: $p) { name type size } }"
ESCAPED_FILES = "query($f: String!, $p: String!) { vfolderFiles(folder: $f, path: $p) { name escaped } }"
MKDIR = "mutation($f: String!, $p: String!) { vfolderMkdir(folder: $f, path: $p) { id } }"
MOVE = "mutation($f: String!, $s: String!, $d: String!) { vfolderMove(folder: $f, src: $s, dst: $d) { id } }"
DELETE = "mutation($f: String!, $p: [String!]!) { vfolderDeleteFiles(folder: $f, paths: $p) { id } }"
DOWNLOAD = "mutation($f: String!, $p: String!) { requestDownload(folder: $f, path: $p) { url token } }"
UPLOAD = "mutation($f: String!, $p: String!) { requestUpload(folder: $f, path: $p, size: 1) { url token } }"
ARCHIVE = "mutation($f: String!, $p: String!) { requestArchive(folder: $f, path: $p) { url token } }"
TRAVERSALS = ["../x", "/etc/passwd", "a\x00b", "a/../../x", "..", "./a", "a//b"]


@pytest.fixture
async def storage(tmp_path: Path, js: JetStreamContext) -> AsyncIterator[RunningStorage]:
    async with running_storage(tmp_path / "local", js) as running:
        yield running


@pytest.fixture
async def gateway(read_models: str, keys: Keys, storage: RunningStorage,  # noqa: F811
                  tmp_path: Path) -> AsyncIterator[GatewayApp]:
    key_file = tmp_path / "storage.key"
    key_file.write_bytes(storage.ctx.key)
    app = build_app(Settings(pg_dsn=read_models, storage_url=storage.url, storage_key_file=str(key_file)),
                    read_wait=2.0)
    try:
        yield app
    finally:
        await app.aclose()


async def ready_folder(client: BerthClient, storage: RunningStorage, pg_dsn: str, name: str) -> str:
    """Creates a folder through the gateway, its directory on the volume, and its provisioned fact."""
    folder_id = (await client.execute(CREATE, {"i": {"name": name}}))["createVFolder"]["id"]
    storage.volume.create(folder_id)
    report = FolderProvisionedReport(report_id=uuid.uuid4().hex, volume="local", folder_id=folder_id,
                                     observed_at=dt.datetime.now(dt.UTC))
    with VFolders(pg_dsn) as app:
        app.apply_report(report, make_context("storage:local", causation_id=report_context_id(report)))
    catch_up(pg_dsn)
    return folder_id


async def test_file_operations_through_the_gateway(
        client_for: Callable[[tuple[str, str]], BerthClient], keys: Keys, pg_dsn: str, storage: RunningStorage,
        nats_url: str, js: JetStreamContext) -> None:
    alice, bob = client_for(keys.alice), client_for(keys.bob)
    folder = await ready_folder(alice, storage, pg_dsn, "work")
    await alice.execute(MKDIR, {"f": folder, "p": "data/raw"})
    (entry,) = (await alice.execute(FILES, {"f": "work", "p": ""}))["vfolderFiles"]
    assert (entry["name"], entry["type"]) == ("data", "dir")
    await alice.execute(MOVE, {"f": folder, "s": "data/raw", "d": "data/clean"})
    assert [e["name"] for e in (await alice.execute(FILES, {"f": folder, "p": "data"}))["vfolderFiles"]] == ["clean"]
    (storage.volume.root / "folders" / folder / "data" / "clean" / "x.txt").write_bytes(b"hello")
    ticket = (await alice.execute(DOWNLOAD, {"f": folder, "p": "data/clean/x.txt"}))["requestDownload"]
    async with httpx.AsyncClient() as http:
        got = await http.get(f"{ticket['url']}/download", headers={"Authorization": f"Bearer {ticket['token']}"})
    assert got.content == b"hello"

    assert (await refused(alice, FILES, {"f": folder, "p": "../.."})).code == "BAD_INPUT"
    assert (await refused(alice, MKDIR, {"f": folder, "p": "/etc/x"})).code == "BAD_INPUT"
    assert (await refused(bob, FILES, {"f": folder, "p": ""})).code == "NOT_FOUND"
    await alice.execute(SHARE, {"f": folder, "u": "bob", "p": "ro"})
    catch_up(pg_dsn)
    assert [e["name"] for e in (await bob.execute(FILES, {"f": folder, "p": "data"}))["vfolderFiles"]] == ["clean"]
    assert (await refused(bob, MKDIR, {"f": folder, "p": "mine"})).code == "FORBIDDEN"
    await alice.execute(SHARE, {"f": folder, "u": "bob", "p": "rw"})
    catch_up(pg_dsn)
    assert (await refused(bob, DELETE, {"f": folder, "p": ["data"]})).code == "FORBIDDEN"  # deleting needs wd
    await alice.execute(DELETE, {"f": folder, "p": ["data/clean/x.txt", "data"]})
    assert (await alice.execute(FILES, {"f": folder, "p": ""}))["vfolderFiles"] == []

    settings = Settings(nats_url=nats_url, pg_dsn=pg_dsn, heartbeat_interval=0.1, heartbeat_timeout=60.0)
    await storage.ctx.reporter.flush()
    async with service_tasks() as tasks:
        tasks.start("controller", lambda stop: run_controller(settings, stop))

        async def recorded() -> bool:
            with VFolders(pg_dsn) as app:
                types = [type(e).type_name() for e in await asyncio.to_thread(app.load, folder)]
            return "vfolder.files_deleted" in types

        await async_wait_for(recorded, timeout=30, message="the storage service's reports were not recorded")
        with VFolders(pg_dsn) as app:
            content = [(type(e).type_name(), getattr(e, "by", None)) for e in app.load(folder)
                       if type(e).type_name() in ("vfolder.directory_created", "vfolder.file_moved",
                                                  "vfolder.files_deleted")]
        assert content == [("vfolder.directory_created", "alice"), ("vfolder.file_moved", "alice"),
                           ("vfolder.files_deleted", "alice"), ("vfolder.files_deleted", "alice")]
        tasks.check()


async def test_every_operation_refuses_a_traversal_before_the_storage_service_is_asked(
        client_for: Callable[[tuple[str, str]], BerthClient], keys: Keys, pg_dsn: str, storage: RunningStorage) -> None:
    alice = client_for(keys.alice)
    folder = await ready_folder(alice, storage, pg_dsn, "work")
    (storage.volume.folder_path(folder) / "ok.txt").write_text("inside")
    for bad in TRAVERSALS:
        for document, variables in [(UPLOAD, {"p": bad}), (DOWNLOAD, {"p": bad}), (ARCHIVE, {"p": bad}),
                                    (FILES, {"p": bad}), (MKDIR, {"p": bad}), (MOVE, {"s": bad, "d": "x"}),
                                    (MOVE, {"s": "ok.txt", "d": bad}), (DELETE, {"p": [bad]}),
                                    (DELETE, {"p": ["ok.txt", bad]})]:
            error = await refused(alice, document, {"f": folder, **variables})
            assert error.code == "BAD_INPUT", (document, bad, error.message)
    assert sorted(p.name for p in storage.volume.folder_path(folder).iterdir()) == ["ok.txt"]


async def test_a_name_no_path_can_address_is_listed_escaped_and_marked(
        client_for: Callable[[tuple[str, str]], BerthClient], keys: Keys, pg_dsn: str, storage: RunningStorage) -> None:
    alice = client_for(keys.alice)
    folder = await ready_folder(alice, storage, pg_dsn, "odd")
    directory = os.fsencode(storage.volume.root / "folders" / folder)
    for name in (b"plain.txt", b"\xff"):  # a kernel's file, its name not UTF-8
        with open(directory + b"/" + name, "wb"):
            pass
    listed = (await alice.execute(ESCAPED_FILES, {"f": folder, "p": ""}))["vfolderFiles"]
    assert sorted((e["name"], e["escaped"]) for e in listed) == [("$'\\xff'", True), ("plain.txt", False)]
