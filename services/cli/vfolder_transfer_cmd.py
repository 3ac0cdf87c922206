"""``berth vfolder upload|download|ls-files|mkdir|mv|rm-files``: a folder's data.

Uploads go straight to the storage service over tus (``services.sdk.tus``: one kept-alive
connection, a small file in its creation request, 64 MiB PATCHes streamed from the file) with a
token the gateway issues per file (``requestUpload``, the quota checked at issue); an interrupted upload
(Ctrl-C, a lost connection) resumes where it stopped when the same command runs again: the upload's
URL is remembered per folder, path, size and modification time in ``<cache dir>/uploads.json``.
Before sending anything, several files' total size is checked against the room the folder's and its
quota scope's quotas leave (``vfolderUploadRoom``): a command that would not fit uploads nothing.
Downloads use ``Range`` to continue a partial ``<file>.part``, then rename it into place. Progress
bars (rich) show on a terminal only. A token expiring during a long transfer is renewed.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import httpx
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from services.cli.disk_room import RoomWatch, check_room
from services.cli.connection import connect_client
from services.cli.output import Output
from services.cli.running import run_async
from services.cli.vfolder_cmd import human_bytes, vfolder
from services.common.settings import default_cache_dir
from services.sdk.tus import TusError, TusUploader, refusal_reason

__all__ = ["download", "download_name", "ls_files", "mkdir", "mv", "rm_files", "upload", "walk"]

REQUEST_UPLOAD = ("mutation($f: String!, $p: String!, $s: Float!) { requestUpload(folder: $f, path: $p, size: $s) "
                  "{ url token expiresAt path maxBytes } }")
UPLOAD_ROOM = "query($f: String!) { vfolderUploadRoom(folder: $f) }"
REQUEST_DOWNLOAD = "mutation($f: String!, $p: String!) { requestDownload(folder: $f, path: $p) { url token path } }"
REQUEST_ARCHIVE = "mutation($f: String!, $p: String!) { requestArchive(folder: $f, path: $p) { url token path } }"
FILES = "query($f: String!, $p: String!) { vfolderFiles(folder: $f, path: $p) { name type size mtime } }"
MKDIR = "mutation($f: String!, $p: String!) { vfolderMkdir(folder: $f, path: $p) { id } }"
MOVE = "mutation($f: String!, $s: String!, $d: String!) { vfolderMove(folder: $f, src: $s, dst: $d) { id } }"
DELETE = "mutation($f: String!, $p: [String!]!) { vfolderDeleteFiles(folder: $f, paths: $p) { id deleted missing } }"
FILE_COLUMNS = [("name", "NAME"), ("type", "TYPE"), ("size", "SIZE"), ("modified", "MODIFIED")]


def _progress(out: Output) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=out.err, disable=not out.err_terminal, transient=False)


class _Resumes:
    """Upload URLs to resume, per (folder, path, size, mtime), in a small JSON file (0600). An upload is kept by
    the storage service across its restarts, but its URL's host and port are those of the service when the upload
    began: ``get`` gives it on the service's current URL."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.data: dict[str, str] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.data = {}

    @staticmethod
    def key(folder: str, dest: str, source: Path) -> str:
        st = source.stat()
        return f"{folder}\x00{dest}\x00{st.st_size}\x00{st.st_mtime_ns}"

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.data, f)
        os.replace(tmp, self.path)

    def get(self, key: str, storage_url: str) -> str | None:
        """The upload to resume for ``key``, on the storage service now at ``storage_url`` (None: none)."""
        stored = self.data.get(key)
        return str(httpx.URL(storage_url).join(httpx.URL(stored).path)) if stored else None

    def put(self, key: str, url: str) -> None:
        self.data[key] = url
        self._save()

    def drop(self, key: str) -> None:
        if self.data.pop(key, None) is not None:
            self._save()


def walk(sources: tuple[Path, ...], dest: str, skipped: list[str]) -> Iterator[tuple[Path, str]]:
    """Yields (local file, folder path) for files and the files under directories. Links (to files
    or directories: never followed) and special files under a directory are not uploaded: their
    local paths are added to ``skipped``."""
    base = dest.strip("/")
    for source in sources:
        if source.is_dir() and not source.is_symlink():
            for root, dirs, files in os.walk(source):
                skipped.extend(str(Path(root) / name) for name in sorted(dirs) if (Path(root) / name).is_symlink())
                dirs.sort()
                for name in sorted(files):
                    local = Path(root) / name
                    if not local.is_file() or local.is_symlink():
                        skipped.append(str(local))
                        continue
                    rel = local.relative_to(source.parent).as_posix()
                    yield local, f"{base}/{rel}" if base else rel
        elif source.is_file():
            yield source, f"{base}/{source.name}" if base else source.name
        else:
            raise click.BadParameter(f"{source}: not a file or directory", param_hint="SOURCES")


def _over_room(files: list[tuple[Path, str, int]], room: float | None) -> str | None:
    """Returns why the files do not fit in ``room`` bytes (None: they fit, or no limit applies)."""
    total = sum(size for _, _, size in files)
    if room is None or total <= room:
        return None
    largest = ", ".join(f"{path} ({human_bytes(size)})" for _, path, size in sorted(files, key=lambda f: -f[2])[:3])
    return (f"{len(files)} file(s) of {total} bytes ({human_bytes(total)}) in all are over the quota: {int(room)} "
            f"bytes ({human_bytes(room)}) left in the folder and its quota scope (largest: {largest}); "
            "nothing was uploaded")


@vfolder.command("upload")
@click.argument("folder")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--dest", default="", help="Directory of the folder to upload into (default: its root).")
@click.pass_obj
@run_async
async def upload(out: Output, folder: str, sources: tuple[Path, ...], dest: str) -> None:
    """Upload files or directories SOURCES into FOLDER; run it again to resume an interrupted upload."""
    resumes = _Resumes(default_cache_dir() / "uploads.json")
    skipped: list[str] = []
    files = [(local, path, local.stat().st_size) for local, path in walk(sources, dest, skipped)]
    if skipped:
        shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        out.info(f"skipped {len(skipped)} link(s) or special file(s), never uploaded or followed: {shown}")
    async with connect_client() as client:
        if len(files) > 1:  # one file: its own requestUpload refuses it before anything is sent
            refused = _over_room(files, (await client.execute(UPLOAD_ROOM, {"f": folder}))["vfolderUploadRoom"])
            if refused is not None:
                raise click.ClickException(refused)

        async def ticket(path: str, size: int) -> dict[str, Any]:
            return (await client.execute(REQUEST_UPLOAD, {"f": folder, "p": path, "s": size}))["requestUpload"]

        loop = asyncio.get_running_loop()
        with _progress(out) as progress, httpx.Client(timeout=httpx.Timeout(60.0, write=None)) as http:
            for local, path, size in files:
                first = await ticket(path, size)
                key = _Resumes.key(folder, first["path"], local)
                task = progress.add_task(path, total=size)
                uploader = TusUploader(http, first["url"], first["token"], renew=lambda p=path, s=size: (
                    asyncio.run_coroutine_threadsafe(ticket(p, s), loop).result()["token"]))
                try:
                    await asyncio.to_thread(uploader.upload, local, resumes.get(key, first["url"]),
                                            on_url=lambda url, k=key: resumes.put(k, url),
                                            on_progress=lambda done, t=task: progress.update(t, completed=done))
                except TusError as exc:
                    raise click.ClickException(f"upload of {path} failed ({exc.status}): {exc.reason}") from exc
                except httpx.HTTPError as exc:
                    raise click.ClickException(f"upload of {path} failed: {exc}") from exc
                resumes.drop(key)
                if not out.err_terminal and not out.is_json:
                    out.info(f"uploaded {path} ({size} bytes)")
    if out.is_json:
        out.json({"uploaded": [p for _, p, _ in files], "skipped": skipped})


async def _fetch(http: httpx.AsyncClient, url: str, target: Path, progress: Progress, label: str) -> int:
    """Downloads ``url`` to ``target`` through ``<target>.part``, continuing a partial one with Range; never leaves
    the disk with under ``disk_room.KEEP_FREE`` free (refused, or stopped, with what to do)."""
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    async with http.stream("GET", url, headers=headers) as response:
        if response.status_code == 416 and have:  # the partial file is already whole
            part.replace(target)
            return have
        if response.status_code >= 400:
            await response.aread()
            raise click.ClickException(f"download refused ({response.status_code}): {refusal_reason(response)}")
        if response.status_code == 200:
            have = 0  # no range served: start over
        announced = int(response.headers.get("content-length", 0))
        check_room(part.parent, announced)  # a sparse file is its whole length on the wire: refused before a byte
        total = announced + have
        task = progress.add_task(label, total=total or None, completed=have)
        room = RoomWatch(part.parent)
        with open(part, "ab" if have else "wb") as f:
            async for chunk in response.aiter_raw():  # as received: the service never encodes a body
                f.write(chunk)
                have += len(chunk)
                progress.update(task, completed=have)
                room.wrote(len(chunk))  # an archive's length is unknown: stopped before the disk fills
    part.replace(target)
    return have


def download_name(folder: str, path: str, as_tar: bool) -> str:
    """Returns the local name of a download: PATH's last part, or for the folder's root the folder's
    (as the user named it), with ``.tar`` for an archive; never a path of several parts."""
    name = Path(path.rstrip("/")).name or Path(folder.rstrip("/")).name
    return (name if name not in ("", ".", "..") else "folder") + (".tar" if as_tar else "")


@vfolder.command("download")
@click.argument("folder")
@click.argument("path")
@click.option("--to", "output", type=click.Path(path_type=Path),
              help="Local file or directory (default: PATH's name here).")
@click.option("--tar", "as_tar", is_flag=True, help="PATH is a directory: download it as a tar archive.")
@click.pass_obj
@run_async
async def download(out: Output, folder: str, path: str, output: Path | None, as_tar: bool) -> None:
    """Download PATH of FOLDER (a file; a directory with --tar); resumes a partial download."""
    name = download_name(folder, path, as_tar)
    target = output if output is not None else Path(name)
    if target.is_dir():
        target = target / name
    async with connect_client() as client:
        query, field = (REQUEST_ARCHIVE, "requestArchive") if as_tar else (REQUEST_DOWNLOAD, "requestDownload")
        ticket = (await client.execute(query, {"f": folder, "p": path}))[field]
    route = "/archive" if as_tar else "/download"
    if as_tar:  # an archive is streamed as it is built: never resumed
        target.with_name(target.name + ".part").unlink(missing_ok=True)
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0, read=None)) as http:
        with _progress(out) as progress:
            try:
                size = await _fetch(http, f"{ticket['url'].rstrip('/')}{route}?token={ticket['token']}", target,
                                    progress, path)
            except click.ClickException as exc:
                if not as_tar and "is a directory" in exc.message:  # the storage service's 400 for a directory
                    exc.message += f"; a directory comes as a tar archive: berth vfolder download {folder} {path} --tar"
                if as_tar:  # a cut archive is of no use (never resumed): its space is given back
                    target.with_name(target.name + ".part").unlink(missing_ok=True)
                raise
    if out.is_json:
        out.json({"path": path, "file": str(target), "bytes": size})
    elif not out.err_terminal:
        out.info(f"downloaded {path} to {target} ({size} bytes)")


@vfolder.command("ls-files")
@click.argument("folder")
@click.argument("path", default="")
@click.pass_obj
@run_async
async def ls_files(out: Output, folder: str, path: str) -> None:
    """List the directory PATH of FOLDER (default: its root); links are shown, never followed."""
    import datetime as dt

    async with connect_client() as client:
        rows = (await client.execute(FILES, {"f": folder, "p": path}))["vfolderFiles"]
    if out.is_json:
        out.json(rows)
        return
    out.table([{**r, "size": int(r["size"]),
                "modified": dt.datetime.fromtimestamp(r["mtime"], dt.UTC).strftime("%Y-%m-%d %H:%M:%S")}
               for r in rows], FILE_COLUMNS)


async def _run(out: Output, query: str, variables: dict[str, Any], done: dict[str, Any], message: str) -> None:
    """Runs one file operation; says what it did: ``message`` for people, with -o json ``done`` and the
    folder's id."""
    async with connect_client() as client:
        data = await client.execute(query, variables)
    if out.is_json:
        out.json({"folder": next(iter(data.values()))["id"], **done})
    else:
        out.info(message)


@vfolder.command("mkdir")
@click.argument("folder")
@click.argument("path")
@click.pass_obj
@run_async
async def mkdir(out: Output, folder: str, path: str) -> None:
    """Create the directory PATH (and its parents) in FOLDER."""
    await _run(out, MKDIR, {"f": folder, "p": path}, {"created": path}, f"created {path}")


@vfolder.command("mv")
@click.argument("folder")
@click.argument("src")
@click.argument("dst")
@click.pass_obj
@run_async
async def mv(out: Output, folder: str, src: str, dst: str) -> None:
    """Move or rename SRC to DST inside FOLDER (DST must not exist)."""
    await _run(out, MOVE, {"f": folder, "s": src, "d": dst}, {"moved": src, "to": dst}, f"moved {src} to {dst}")


@vfolder.command("rm-files")
@click.argument("folder")
@click.argument("paths", nargs=-1, required=True)
@click.pass_obj
@run_async
async def rm_files(out: Output, folder: str, paths: tuple[str, ...]) -> None:
    """Delete PATHS (files, or directories with what they hold) of FOLDER. Says which it deleted; a path that named
    nothing is named on stderr and makes it exit 1 (as rm does), the others deleted all the same."""
    async with connect_client() as client:
        done = (await client.execute(DELETE, {"f": folder, "p": list(paths)}))["vfolderDeleteFiles"]
    if out.is_json:
        out.json({"folder": done["id"], "deleted": done["deleted"], "missing": done["missing"]})
    elif done["deleted"]:
        out.info(f"deleted {', '.join(done['deleted'])}")
    if done["missing"]:
        raise click.ClickException(f"not found (nothing deleted): {', '.join(done['missing'])}")
