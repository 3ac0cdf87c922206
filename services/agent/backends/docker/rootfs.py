"""The root filesystem of the offline kernel image, kept as a tarball in a cache directory.

``build_rootfs`` runs ``debootstrap --variant=minbase --include=python3 <suite>`` from this
machine's Debian mirror (the first ``http(s)://…/debian`` of ``/etc/apt/sources.list(.d)``,
else ``deb.debian.org``; ``BERTH_DEBIAN_MIRROR`` overrides, ``BERTH_IMAGE_SUITE`` picks another
suite), names ``python3`` ``python`` too (what users' commands and scripts call, as in the ``python``
images they know), drops caches and docs, and tars the tree into
``<cache>/kernel-rootfs-<suite>-<arch>-r<ROOTFS_RECIPE>.tar`` (written aside and renamed, under a
lock, so concurrent builders never see half a tarball). The image is then one ``docker import`` of that tarball (``kernel_image.py``), so a rebuild after the
image was removed takes seconds, not a minute. Building needs root and ``debootstrap``; it
reaches only the Debian mirror, never a container registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import platform
import re
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path

from services.common.lifetime import die_with_parent

__all__ = [
    "DEFAULT_MIRROR",
    "DEFAULT_SUITE",
    "ImageBuildError",
    "ROOTFS_RECIPE",
    "add_python_alias",
    "build_rootfs",
    "cannot_build",
    "debian_mirror",
    "debian_suite",
    "rootfs_tarball",
]

ROOTFS_RECIPE = 2
"""The version of what ``build_rootfs`` puts in the tree, in the cached tarball's name and the image's
``berth.rootfs`` label (``kernel_image.py``): a changed recipe builds anew, never reuses an older cache
(2: ``python`` beside ``python3``)."""
DEFAULT_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
PACKAGE_LINE_EVERY = 3.0
"""Seconds between two of debootstrap's per-package lines shown (its phases are all shown)."""
PRUNED = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man")
_MIRROR = re.compile(r"https?://\S*/debian/?(?=\s|$)", re.MULTILINE)
_PER_PACKAGE = re.compile(r"I: (Retrieving|Validating|Extracting|Unpacking|Configuring) [a-z0-9][a-z0-9.+-]*(:\w+)?( \d\S*)?(\.\.\.)?")

Say = Callable[[str], None]


class ImageBuildError(Exception):
    """Raised when the kernel image cannot be built here; the message says why and what to do."""


def debian_suite(environ: Mapping[str, str] | None = None) -> str:
    """Returns ``BERTH_IMAGE_SUITE`` or ``DEFAULT_SUITE``."""
    return (os.environ if environ is None else environ).get("BERTH_IMAGE_SUITE") or DEFAULT_SUITE


def debian_mirror(environ: Mapping[str, str] | None = None, sources: Iterable[str] | None = None) -> str:
    """Returns ``BERTH_DEBIAN_MIRROR``, else the first Debian mirror of the apt sources' texts
    (``sources``; this machine's when None), else ``DEFAULT_MIRROR``."""
    env = os.environ if environ is None else environ
    if env.get("BERTH_DEBIAN_MIRROR"):
        return env["BERTH_DEBIAN_MIRROR"]
    for text in _apt_sources() if sources is None else sources:
        for line in text.splitlines():
            for url in _MIRROR.findall(line.partition("#")[0]):
                return url
    return DEFAULT_MIRROR


def _apt_sources() -> list[str]:
    files = [SOURCES[0], *sorted(SOURCES[1].glob("*.list")), *sorted(SOURCES[1].glob("*.sources"))]
    texts = []
    for path in files:
        with contextlib.suppress(OSError):
            texts.append(path.read_text(errors="replace"))
    return texts


def rootfs_tarball(cache_dir: Path, suite: str = DEFAULT_SUITE) -> Path:
    """Returns where the rootfs tarball of ``suite`` for this machine's architecture is cached."""
    return Path(cache_dir) / f"kernel-rootfs-{suite}-{platform.machine() or 'unknown'}-r{ROOTFS_RECIPE}.tar"


def add_python_alias(root: Path) -> None:
    """Names the tree's ``python3`` ``python`` too (a relative link in ``usr/bin``), unless the tree
    has a ``python`` already or no ``python3``."""
    alias = root / "usr" / "bin" / "python"
    if (root / "usr" / "bin" / "python3").exists() and not alias.is_symlink() and not alias.exists():
        alias.symlink_to("python3")


def cannot_build() -> str | None:
    """Returns why the rootfs cannot be built by this process (not root, no debootstrap), None
    when it can."""
    if os.geteuid() != 0:
        return "building it needs root (debootstrap creates device nodes and chowns files)"
    if shutil.which("debootstrap") is None:
        return "debootstrap is not installed (apt-get install debootstrap)"
    return None


async def build_rootfs(tarball: Path, *, suite: str = DEFAULT_SUITE, mirror: str | None = None,
                       say: Say = print) -> None:
    """Runs debootstrap and caches its tree as ``tarball``; ``say`` gets its phases (and one
    package line every few seconds). Raises ImageBuildError when it cannot or does not succeed."""
    why = cannot_build()
    if why is not None:
        raise ImageBuildError(why)
    mirror = mirror or debian_mirror()
    tarball.parent.mkdir(parents=True, exist_ok=True)
    async with _locked(tarball.with_suffix(".lock"), say) as waited:
        if waited and tarball.exists():
            say(f"another build saved {tarball} meanwhile")
            return
        workdir = Path(tempfile.mkdtemp(prefix="berth-rootfs."))
        try:
            root = workdir / "root"
            say(f"debootstrap {suite} (minbase + python3) from {mirror} into {root}")
            await _run(["debootstrap", "--variant=minbase", "--include=python3", suite, str(root), mirror], say)
            add_python_alias(root)
            for pruned in PRUNED:
                for entry in (root / pruned).glob("*"):
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink(missing_ok=True)
            partial = tarball.with_name(f"{tarball.name}.partial")
            say(f"saving the root filesystem as {tarball}")
            await _run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(partial), "."], say)
            os.replace(partial, tarball)
        finally:
            await _run(["rm", "-rf", "--one-file-system", str(workdir)], say, check=False)


async def _run(argv: list[str], say: Say, *, check: bool = True) -> None:
    """Runs a command in its own process group, passing its output to ``say`` (debootstrap's
    per-package lines at most every PACKAGE_LINE_EVERY seconds); on cancellation the group is
    killed. Raises ImageBuildError with the last lines when it fails."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True, preexec_fn=die_with_parent(signal.SIGTERM),
    )
    tail: list[str] = []
    shown_at = 0.0
    try:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            tail = [*tail[-19:], line]
            per_package = _PER_PACKAGE.fullmatch(line) is not None
            if line and (not per_package or time.monotonic() - shown_at >= PACKAGE_LINE_EVERY):
                shown_at = time.monotonic()
                say(f"{Path(argv[0]).name}: {line}")
        code = await proc.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise
    if code != 0 and check:
        last = "\n".join(tail[-8:])
        raise ImageBuildError(f"{' '.join(argv[:3])} ... exited with {code}:\n{last}")


@contextlib.asynccontextmanager
async def _locked(path: Path, say: Say) -> AsyncIterator[bool]:
    """Holds an exclusive lock on ``path`` (another builder of the same rootfs waits); yields
    whether it had to wait for one."""
    with open(path, "w") as handle:
        waited = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited:
                    say(f"waiting for another build of the kernel root filesystem (lock {path})")
                    waited = True
                await asyncio.sleep(1.0)
        try:
            yield waited
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
