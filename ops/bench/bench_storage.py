"""Benchmark of the storage data plane against plain copies on the same disk, in the same run.

The data plane (``services.storage.app``: tus uploads, downloads, archives) runs in a process of its
own on a volume in a temporary directory (no NATS: its reports are dropped); the client side is
the one ``berth vfolder upload`` uses (``services.sdk.tus``: a kept-alive connection per thread, 64 MiB
PATCHes streamed from the file, a small file in its creation request) and an httpx stream for
downloads (written as received); the server runs on uvloop like the service.

  - one file of --size-mib (default 1024): tus upload MiB/s next to ``shutil.copyfile`` + fsync (an
    upload is fsynced before it lands) and a plain copy; download MiB/s next to the plain copy (ratio =
    baseline time / transfer time);
  - --files (default 10,000) small files of --file-bytes (default 1024): uploaded one tus upload
    each (files/s) next to ``shutil.copyfile`` of each; then the folder's listing of them, and its
    tar archive streamed over HTTP next to ``tarfile`` writing the same directory locally.
Prints one table; nothing here is a pass/fail test.

Usage: .venv/bin/python ops/bench/bench_storage.py [--size-mib 1024] [--files 10000] [--file-bytes 1024] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from contracts.storage_token import mint_token, new_key  # noqa: E402
from contracts.vfolder import new_folder_id  # noqa: E402
from services.sdk.tus import TusUploader  # noqa: E402

MiB = 1 << 20
ROOM = 1 << 40
"""The room left each upload token grants (quota: plenty)."""


def serve(root: Path, key_file: Path) -> None:
    """The child process: the data plane on a free port; prints its URL, runs until killed."""
    from services.storage.app import build_app
    from services.storage.context import StorageContext
    from services.storage.quota import Reservations
    from services.storage.reporting import Reporter
    from services.storage.server import bind, new_event_loop, serving
    from services.storage.uploads import UploadStore
    from services.storage.usage import UsageMeter
    from services.storage.volume import PosixVolume

    async def run() -> None:
        volume = PosixVolume("local", root)
        reporter = Reporter(None)
        ctx = StorageContext(volumes={"local": volume}, uploads={"local": UploadStore(volume, Reservations())},
                             key=key_file.read_bytes(), reporter=reporter, meter=UsageMeter(reporter))
        async with serving(build_app(ctx), bind("127.0.0.1", 0)) as url:
            print(url, flush=True)
            await asyncio.Event().wait()

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(run())


class Plane:
    def __init__(self, url: str, key: bytes, folder: str) -> None:
        self.url, self.key, self.folder = url, key, folder
        self._local = threading.local()

    @property
    def http(self) -> httpx.Client:
        """This thread's kept-alive connection (as one ``berth vfolder upload`` keeps one)."""
        if not hasattr(self._local, "http"):
            self._local.http = httpx.Client(timeout=httpx.Timeout(60.0, write=None))
        return self._local.http

    def token(self, path: str, op: str, max_bytes: int = 0) -> str:
        return mint_token(self.key, folder=self.folder, volume="local", path=path, op=op,  # type: ignore[arg-type]
                          user="bench", now=time.time(), ttl=3600, max_bytes=max_bytes, quota_scope="user:bench")[0]

    def upload(self, source: Path, path: str) -> None:
        TusUploader(self.http, self.url, self.token(path, "upload", ROOM)).upload(source)

    def download(self, path: str, target: Path) -> None:
        with httpx.stream("GET", self.url + "/download", params={"token": self.token(path, "download")},
                          timeout=None) as response, open(target, "wb") as f:
            response.raise_for_status()
            for chunk in response.iter_raw():  # as services/cli/vfolder_transfer_cmd.py
                f.write(chunk)


def _durable_copy(source: Path, target: Path) -> None:
    """A copy as durable as a finished upload: its bytes fsynced."""
    shutil.copyfile(source, target)
    with open(target, "rb") as f:
        os.fsync(f.fileno())


def timed(fn) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--file-bytes", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=4, help="concurrent small-file uploads (and copies)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of the one-file measures (interleaved with their baselines; best kept)")
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), Path(args.serve[1]))
        return
    work = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    key_file = work / "storage.key"
    key_file.write_bytes(new_key())
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(work / "vol"), str(key_file)],
                              stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().strip()  # type: ignore[union-attr]
        folder = new_folder_id()
        (work / "vol" / "folders" / folder).mkdir(parents=True)
        plane = Plane(url, key_file.read_bytes(), folder)
        rows = run(plane, work, args)
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'measure':<44} {'berth':>12} {'baseline':>12} {'ratio':>7}")
    for name, ours, base, unit in rows:
        print(f"{name:<44} {ours:>10.1f} {unit:<2}{base:>10.1f} {unit:<2}{ours / base if base else 0:>6.2f}x")


def run(plane: Plane, work: Path, args: argparse.Namespace) -> list[tuple[str, float, float, str]]:
    size = args.size_mib * MiB
    big = work / "big.bin"
    with open(big, "wb") as f:
        for _ in range(args.size_mib):
            f.write(os.urandom(MiB))
    copy_s = durable_s = up_s = down_s = float("inf")
    for _ in range(args.repeat):  # interleaved, the best of each kept: a busy machine's noise hits both sides
        copy_s = min(copy_s, timed(lambda: shutil.copyfile(big, work / "big.copy")))
        (work / "big.copy").unlink()
        durable_s = min(durable_s, timed(lambda: _durable_copy(big, work / "big.copy")))
        up_s = min(up_s, timed(lambda: plane.upload(big, "big.bin")))
        down_s = min(down_s, timed(lambda: plane.download("big.bin", work / "big.down")))
        assert (work / "big.down").stat().st_size == size
        for name in ("big.copy", "big.down"):
            (work / name).unlink()
    rows = [(f"upload {args.size_mib} MiB (tus) vs copy+fsync", size / MiB / up_s, size / MiB / durable_s, "MiB/s"),
            (f"upload {args.size_mib} MiB (tus) vs copy", size / MiB / up_s, size / MiB / copy_s, "MiB/s"),
            (f"download {args.size_mib} MiB vs copy", size / MiB / down_s, size / MiB / copy_s, "MiB/s")]

    small = work / "small"
    small.mkdir()
    payload = os.urandom(args.file_bytes)
    for i in range(args.files):
        (small / f"f{i:05d}").write_bytes(payload)
    copies = work / "copies"
    copies.mkdir()
    with ThreadPoolExecutor(args.workers) as pool:
        copy_s = timed(lambda: list(pool.map(lambda i: shutil.copyfile(small / f"f{i:05d}", copies / f"f{i:05d}"),
                                             range(args.files))))
        up_s = timed(lambda: list(pool.map(lambda i: plane.upload(small / f"f{i:05d}", f"small/f{i:05d}"),
                                           range(args.files))))
    rows.append((f"{args.files} files of {args.file_bytes} B upload vs copy", args.files / up_s,
                 args.files / copy_s, "/s"))
    list_s = timed(lambda: httpx.get(plane.url + "/files", params={"token": plane.token("small", "list"),
                                                                   "path": "small"}, timeout=None).raise_for_status())
    scan_s = timed(lambda: sorted(os.scandir(small), key=lambda e: e.name))
    rows.append((f"list {args.files} files vs os.scandir", args.files / list_s, args.files / scan_s, "/s"))

    def tar_local() -> None:
        with tarfile.open(fileobj=io.BytesIO(), mode="w|") as tar:
            tar.add(small, arcname=".")

    def tar_http() -> None:
        with httpx.stream("GET", plane.url + "/archive", params={"token": plane.token("small", "archive")},
                          timeout=None) as response:
            for _ in response.iter_bytes(MiB):
                pass

    rows.append((f"archive {args.files} files vs local tarfile", args.files / timed(tar_http),
                 args.files / timed(tar_local), "/s"))
    return rows


if __name__ == "__main__":
    main()
