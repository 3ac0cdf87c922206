"""``berth vfolder upload|download|ls-files|mkdir|mv|rm-files`` as subprocesses against a real
gateway and a real storage data plane: the upload goes over tus (``services.sdk.tus``) with a gateway-issued
token, an upload killed half-way resumes the same upload when run again (at the storage service's current URL),
a partial download continues with Range, and the file operations reach the folder."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from contracts.storage_reports import FolderProvisionedReport
from services.common.settings import Settings
from services.sdk.client import BerthClient
from services.storage.uploads import UploadStore
from tests.integration.test_vfolder_cli import projecting, storage_says  # noqa: F401 - fixture
from tests.support.cli import as_json, berth
from tests.support.gateway import Keys, clean_streams, keys, read_models, serving  # noqa: F401 - fixtures
from tests.support.storage import RunningStorage, running_storage
from tests.support.waiting import async_wait_for

pytestmark = pytest.mark.asyncio
MiB = 1 << 20
DELETE_FILES = ("mutation($f: String!, $p: [String!]!) { vfolderDeleteFiles(folder: $f, paths: $p) {"
                " id deleted missing } }")


class Throttled:
    """Slows the bytes the storage service takes by ``delay`` s per MiB (so a test can kill a client
    mid-upload), and counts the uploads created."""

    def __init__(self, store: UploadStore, delay: float) -> None:
        self.created = 0
        create, append = store.create, store.append

        def counting_create(**kwargs):  # noqa: ANN003, ANN202
            self.created += 1
            return create(**kwargs)

        async def slow_append(upload, offset, chunks):  # noqa: ANN001, ANN202
            async def slowed():  # noqa: ANN202
                since = 0
                async for chunk in chunks:
                    yield chunk
                    since += len(chunk)
                    if since >= MiB:
                        since = 0
                        await asyncio.sleep(delay)
            return await append(upload, offset, slowed())

        store.create, store.append = counting_create, slow_append  # type: ignore[method-assign]


@contextlib.asynccontextmanager
async def _gateway_and_storage(tmp_path: Path, read_models: str,
                               nats_url: str) -> AsyncIterator[tuple[str, RunningStorage]]:
    """A storage data plane and a gateway that issues its tokens (with its key); yields (gateway URL, storage)."""
    async with running_storage(tmp_path / "vol") as storage:
        key_file = tmp_path / "storage.key"
        key_file.write_bytes(storage.ctx.key)
        key_file.chmod(0o600)
        settings = Settings(pg_dsn=read_models, nats_url=nats_url, gateway_host="127.0.0.1", gateway_port=0,
                            storage_url=storage.url, storage_key_file=str(key_file))
        async with serving(settings) as url:
            yield url, storage


async def test_upload_resume_download_and_file_operations_through_the_cli(
        tmp_path: Path, read_models: str, keys: Keys, nats_url: str, clean_streams, projecting, pg_dsn: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    async with _gateway_and_storage(tmp_path, read_models, nats_url) as (url, storage):
        await _exercise(url, keys.alice, storage, tmp_path, pg_dsn)


async def _exercise(url: str, alice: tuple[str, str], storage: RunningStorage, tmp_path: Path, pg_dsn: str) -> None:
    folder = await _ready_folder(url, alice, storage, pg_dsn)
    root = storage.volume.folder_path(folder)

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(40 * MiB))
    throttle = Throttled(storage.ctx.uploads["local"], delay=0.1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    env.update(BERTH_ENDPOINT=url, BERTH_ACCESS_KEY=alice[0], BERTH_SECRET_KEY=alice[1])
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.cli", "vfolder", "upload", "data",
                                                str(big), "--dest", "in", env=env,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    parts = storage.volume.uploads

    def some_bytes_in() -> bool:
        return any(p.stat().st_size >= 8 * MiB for p in parts.glob("*.part"))

    await async_wait_for(some_bytes_in, timeout=60, message="the upload never started")
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    assert not (root / "in" / "big.bin").exists()
    # the storage service restarted meanwhile, on another port (berth up binds a free one): the upload it kept
    # resumes at its new URL (the run failed 'Connection refused' at the old one, every time)
    cache = tmp_path / "cache" / "berth" / "uploads.json"
    stored = json.loads(cache.read_text())
    moved = {key: re.sub(r"//[^/]+/", "//127.0.0.1:9/", url, count=1) for key, url in stored.items()}
    assert moved
    cache.write_text(json.dumps(moved))
    await berth(url, alice, "vfolder", "upload", "data", str(big), "--dest", "in")
    assert (root / "in" / "big.bin").read_bytes() == big.read_bytes()
    assert throttle.created == 1  # the second run resumed the first run's upload
    assert list(parts.iterdir()) == []

    # a partial download continues where it stopped
    target = tmp_path / "copy.bin"
    (tmp_path / "copy.bin.part").write_bytes(big.read_bytes()[: 5 * MiB])
    await berth(url, alice, "vfolder", "download", "data", "in/big.bin", "--to", str(target))
    assert target.read_bytes() == big.read_bytes()
    _, _, err = await berth(url, alice, "vfolder", "download", "data", "in/big.bin", "--to",
                            str(tmp_path / "no-such-dir" / "x"), ok=False)
    assert f"Error: {tmp_path / 'no-such-dir'}: No such file or directory" in err, err  # not "cannot reach"

    # -o json says what each did (it printed nothing on stdout)
    assert await as_json(url, alice, "vfolder", "mkdir", "data", "made/deep") == {"folder": folder,
                                                                                   "created": "made/deep"}
    assert await as_json(url, alice, "vfolder", "mv", "data", "in/big.bin", "made/deep/moved.bin") == {
        "folder": folder, "moved": "in/big.bin", "to": "made/deep/moved.bin"}
    listed = await as_json(url, alice, "vfolder", "ls-files", "data", "made/deep")
    assert [(e["name"], e["type"], int(e["size"])) for e in listed] == [("moved.bin", "file", 40 * MiB)]
    assert await as_json(url, alice, "vfolder", "rm-files", "data", "made") == {"folder": folder, "deleted": ["made"],
                                                                                 "missing": []}
    assert sorted(p.name for p in root.iterdir()) == ["in"]
    _, _, err = await berth(url, alice, "vfolder", "download", "data", "../etc/passwd", ok=False)
    assert "component" in err or "path" in err
    _, _, err = await berth(url, alice, "vfolder", "download", "data", "in", ok=False)  # a directory, without --tar
    assert "download refused (400): not a regular file: 'in'" in err, err  # the service's reason, not its JSON


async def test_an_upload_that_does_not_fit_sends_nothing(
        tmp_path: Path, read_models: str, keys: Keys, nats_url: str, clean_streams, projecting, pg_dsn: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    async with _gateway_and_storage(tmp_path, read_models, nats_url) as (url, storage):
        folder = await _ready_folder(url, keys.alice, storage, pg_dsn)
        await berth(url, keys.admin, "vfolder", "set-quota", folder, "25")
        throttle = Throttled(storage.ctx.uploads["local"], delay=0)
        (tmp_path / "a.txt").write_bytes(b"a" * 10)
        (tmp_path / "b.txt").write_bytes(b"b" * 20)

        _, _, err = await berth(url, keys.alice, "vfolder", "upload", "data", str(tmp_path / "a.txt"),
                                str(tmp_path / "b.txt"), ok=False)
        assert "2 file(s) of 30 bytes" in err and "25 bytes" in err and "b.txt (20 B)" in err, err
        assert "nothing was uploaded" in err
        assert (throttle.created, list(storage.volume.folder_path(folder).iterdir())) == (0, [])
        await berth(url, keys.alice, "vfolder", "upload", "data", str(tmp_path / "b.txt"))  # this one fits
        assert (storage.volume.folder_path(folder) / "b.txt").read_bytes() == b"b" * 20


async def test_rm_files_says_which_paths_it_deleted_and_which_did_not_exist(
        tmp_path: Path, read_models: str, keys: Keys, nats_url: str, clean_streams, projecting, pg_dsn: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, every path given was reported deleted, one that named nothing too (and one under a directory that
    did not exist failed the whole command, NOT_FOUND, after the paths before it were deleted); a path that did
    not exist makes it exit 1, as rm does, once it said what it deleted."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    async with _gateway_and_storage(tmp_path, read_models, nats_url) as (url, storage):
        folder = await _ready_folder(url, keys.alice, storage, pg_dsn)
        root = storage.volume.folder_path(folder)

        def fill() -> None:
            (root / "dir").mkdir()
            (root / "dir" / "b.txt").write_bytes(b"b")
            (root / "a.txt").write_bytes(b"a")

        fill()
        _, out, err = await berth(url, keys.alice, "vfolder", "rm-files", "data", "a.txt", "nope", "gone/x", "dir",
                                  "a.txt", ok=False)
        assert "deleted a.txt, dir" in err and "not found (nothing deleted): nope, gone/x, a.txt" in err, (out, err)
        assert list(root.iterdir()) == []
        fill()
        status, out, _ = await berth(url, keys.alice, "-o", "json", "vfolder", "rm-files", "data", "dir", "nope",
                                     ok=False)
        assert (status, json.loads(out)) == (1, {"folder": folder, "deleted": ["dir"], "missing": ["nope"]})
        assert await as_json(url, keys.alice, "vfolder", "rm-files", "data", "a.txt") == {
            "folder": folder, "deleted": ["a.txt"], "missing": []}
        async with BerthClient(url, *keys.alice) as alice:
            answer = (await alice.execute(DELETE_FILES, {"f": folder, "p": ["a.txt", "x/y"]}))["vfolderDeleteFiles"]
        assert answer == {"id": folder, "deleted": [], "missing": ["a.txt", "x/y"]}


async def test_rm_files_names_a_path_through_a_file_missing_and_deletes_the_others(
        tmp_path: Path, read_models: str, keys: Keys, nats_url: str, clean_streams, projecting, pg_dsn: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, a path whose parent is a file (``f.txt/x``) failed the whole command BAD_INPUT after the paths before
    it were deleted: it names nothing, as a path under a missing directory, so it is reported missing."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    async with _gateway_and_storage(tmp_path, read_models, nats_url) as (url, storage):
        folder = await _ready_folder(url, keys.alice, storage, pg_dsn)
        root = storage.volume.folder_path(folder)
        (root / "a.txt").write_bytes(b"a")
        (root / "f.txt").write_bytes(b"f")
        _, out, err = await berth(url, keys.alice, "vfolder", "rm-files", "data", "a.txt", "f.txt/x", ok=False)
        assert "deleted a.txt" in err and "not found (nothing deleted): f.txt/x" in err, (out, err)
        assert [p.name for p in root.iterdir()] == ["f.txt"]
        async with BerthClient(url, *keys.alice) as alice:
            answer = (await alice.execute(DELETE_FILES, {"f": folder, "p": ["f.txt/x/y", "f.txt"]}))
        assert answer["vfolderDeleteFiles"] == {"id": folder, "deleted": ["f.txt"], "missing": ["f.txt/x/y"]}
        assert list(root.iterdir()) == []


async def _ready_folder(url: str, alice: tuple[str, str], storage: RunningStorage, pg_dsn: str) -> str:
    """Creates alice's folder ``data``, its directory on the volume and its provisioned fact; returns its id once
    the gateway sees it ready."""
    folder = (await as_json(url, alice, "vfolder", "create", "data"))["id"]
    storage.volume.create(folder)
    storage_says(pg_dsn, FolderProvisionedReport, folder)
    await async_wait_for(lambda: _ready(url, alice), timeout=20, message="folder never ready")
    return folder


async def _ready(url: str, alice: tuple[str, str]) -> bool:
    return (await as_json(url, alice, "vfolder", "info", "data"))["status"] == "ready"
