"""Storage folders mounted into real containers through `berth up` (its storage service included) with
the Docker backend and the CLI: a folder made with `berth vfolder create` and a file uploaded into it;
`berth run --mount data` writes a file that lands on the volume's directory on the host, `--mount data:ro`
reads both and a write fails with EROFS; `berth session info` shows the mounts; folders shared ro with a
second user (`berth vfolder share`, and `invite` + `accept`) mount read-only in that user's own container
(reads work, writes fail with EROFS) and `rw` is refused at enqueue; links a container plants (to the
host, to `/`, to `..`) lead no CLI operation outside the folder, nor does a mount target; a folder in the trash is refused
before any session exists; a folder whose directory is missing on the node fails the start with the
reason."""

from __future__ import annotations

import asyncio
import shutil
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import RunningBerth, berth_env, running, tenant
from tests.support.docker_backend import release_io_mounts, remove_agent_containers
from tests.support.folders import created_with_cli, volume
from tests.support.images import kernel_image
from tests.support.waiting import wait_for

__all__ = ["kernel_image", "volume"]

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

WRITE = """
import errno
try:
    with open('/home/work/data/new.txt', 'w') as f:
        f.write('x')
    print('wrote')
except OSError as exc:
    print(errno.errorcode[exc.errno])
print(open('/home/work/data/out.txt').read().strip(), open('/home/work/data/readme.txt').read().strip())
"""


@pytest.fixture
def docker_berth(tmp_path: Path, pg_dsn: str, volume: Path, kernel_image: str) -> Iterator[RunningBerth]:
    """A running Berth whose agent runs kernels in Docker and whose storage service and agent share the
    volume ``local``."""
    agent_id = f"e2e-{uuid.uuid4().hex[:8]}"
    env = berth_env(tmp_path / "berth", BERTH_PG_DSN=pg_dsn, BERTH_AGENT_BACKEND="docker", BERTH_AGENT_ID=agent_id,
                    BERTH_DOCKER_STOP_GRACE="2", BERTH_STORAGE_VOLUMES=f"local={volume}")
    try:
        with running(tmp_path / "berth", env) as berth:
            yield berth
    finally:
        asyncio.run(remove_agent_containers(agent_id))
        release_io_mounts(tmp_path)


def ready_folder(berth: RunningBerth, volume: Path, name: str) -> Path:
    """Creates folder ``name`` with the CLI; returns its directory once the storage service made it ready."""
    return volume / "folders" / created_with_cli(berth, name)["id"]


def test_folders_mount_rw_and_ro_into_real_containers(docker_berth: RunningBerth, volume: Path, tmp_path: Path,
                                                      kernel_image: str) -> None:
    berth = docker_berth
    data = ready_folder(berth, volume, "data")
    (tmp_path / "readme.txt").write_text("uploaded\n")
    berth.berth("vfolder", "upload", "data", str(tmp_path / "readme.txt"))

    wrote = berth.berth("run", "-i", kernel_image, "-n", "writer", "--mount", "data",
                        "--exec", "echo from-kernel > /home/work/data/out.txt")
    assert wrote.returncode == 0, wrote.stderr
    assert (data / "out.txt").read_text() == "from-kernel\n"
    info = berth.berth_json("session", "info", "writer")
    assert [(m["name"], m["target"], m["permission"]) for m in info["mounts"]] == [("data", "/home/work/data", "rw")]

    read = berth.berth("run", "--rm", "-i", kernel_image, "--mount", "data:ro", "-c", WRITE)
    assert read.stdout.split() == ["EROFS", "from-kernel", "uploaded"], (read.stdout, read.stderr)
    assert sorted(p.name for p in data.iterdir()) == ["out.txt", "readme.txt"]

    table = berth.berth("session", "info", "writer").stdout
    assert "/home/work/data" in table and "rw" in table


READ_SHARED = """
import errno
for name in ('shared', 'invited'):
    try:
        open(f'/home/work/{name}/mine.txt', 'w').write('x')
        print('wrote')
    except OSError as exc:
        print(errno.errorcode[exc.errno])
    print(open(f'/home/work/{name}/readme.txt').read().strip())
"""


def test_folders_shared_read_only_mount_read_only_for_the_other_user(docker_berth: RunningBerth, volume: Path,
                                                                      tmp_path: Path, kernel_image: str) -> None:
    berth = docker_berth
    shared, invited = ready_folder(berth, volume, "shared"), ready_folder(berth, volume, "invited")
    (tmp_path / "readme.txt").write_text("from-owner\n")
    for name in ("shared", "invited"):
        berth.berth("vfolder", "upload", name, str(tmp_path / "readme.txt"))
    bob = tenant(berth, "bob")
    berth.berth("vfolder", "share", "shared", "bob", "--permission", "ro")
    invitation = berth.berth_json("vfolder", "invite", "invited", "bob", "--permission", "ro")["id"]  # type: ignore[index]
    wait_for(lambda: [i["id"] for i in bob.json("vfolder", "invitations")] == [invitation], timeout=30,
             message="bob never saw the invitation")
    assert bob.json("vfolder", "accept", invitation)["myPermission"] == "ro"

    read = bob.berth("run", "--rm", "-i", kernel_image, "--mount", "shared", "--mount", "invited", "-c", READ_SHARED)
    assert read.stdout.split() == ["EROFS", "from-owner", "EROFS", "from-owner"], (read.stdout, read.stderr)
    assert sorted(p.name for p in shared.iterdir()) == sorted(p.name for p in invited.iterdir()) == ["readme.txt"]

    for name in ("shared", "invited"):
        refused = bob.berth("run", "-i", kernel_image, "--mount", f"{name}:rw", "-c", "print(1)", check=False)
        assert refused.returncode != 0
        assert f"folder {name}: you may mount it read-only only" in refused.stderr, refused.stderr
    assert [s["status"] for s in bob.sessions()] == ["TERMINATED"]  # the reading one; nothing of the refused


def test_links_planted_from_a_container_lead_nowhere(docker_berth: RunningBerth, volume: Path, tmp_path: Path,
                                                     kernel_image: str) -> None:
    berth = docker_berth
    data = ready_folder(berth, volume, "data")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("s3cret")
    plant = (f"ln -s {outside} /home/work/data/host && ln -s /etc/hostname /home/work/data/pw && "
             "ln -s .. /home/work/data/up && echo inside > /home/work/data/ok.txt")
    berth.berth("run", "--rm", "-i", kernel_image, "--mount", "data", "--exec", plant)
    assert (data / "host").is_symlink() and (data / "pw").is_symlink()
    (tmp_path / "up.txt").write_text("x")
    back = tmp_path / "back"
    back.mkdir()

    for args in (("download", "data", "host/secret.txt", "--to", str(back / "a")),
                 ("download", "data", "pw", "--to", str(back / "b")),
                 ("download", "data", "up/../etc", "--to", str(back / "c")),
                 ("download", "data", "host", "--tar", "--to", str(back / "d.tar")),
                 ("ls-files", "data", "host"), ("ls-files", "data", "up"),
                 ("mkdir", "data", "host/new"), ("mv", "data", "ok.txt", "host/moved"),
                 ("mv", "data", "host/secret.txt", "taken"), ("rm-files", "data", "host/secret.txt"),
                 ("upload", "data", str(tmp_path / "up.txt"), "--dest", "host")):
        done = berth.berth("vfolder", *args, check=False)
        assert done.returncode != 0, (args, done.stdout)
    mount = berth.berth("run", "-i", kernel_image, "--mount", "data:/home/work/../../etc", "-c", "1", check=False)
    assert mount.returncode != 0 and "no empty, '.' or '..' components" in mount.stderr, mount.stderr

    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"] and list(back.iterdir()) == []
    assert (outside / "secret.txt").read_text() == "s3cret"
    assert sorted(p.name for p in data.iterdir()) == ["host", "ok.txt", "pw", "up"]
    assert sorted(p.name for p in (volume / ".uploads").iterdir()) == []
    listed = {e["name"]: e["type"] for e in berth.berth_json("vfolder", "ls-files", "data")}  # type: ignore[union-attr]
    assert listed == {"host": "link", "ok.txt": "file", "pw": "link", "up": "link"}
    berth.berth("vfolder", "download", "data", "", "--tar", "--to", str(back / "all.tar"))
    with tarfile.open(back / "all.tar") as tar:
        assert tar.getnames() == ["ok.txt"]  # links left out


def test_a_trashed_folder_is_refused_before_any_session(docker_berth: RunningBerth, volume: Path,
                                                        kernel_image: str) -> None:
    berth = docker_berth
    ready_folder(berth, volume, "old")
    berth.berth("vfolder", "rm", "old")

    done = berth.berth("run", "-i", kernel_image, "--mount", "old", "-c", "print(1)", check=False)

    assert done.returncode != 0
    assert "folder old is in the trash" in done.stderr, done.stderr
    assert berth.berth_json("session", "ls", "--all") == []


def test_a_folder_missing_on_the_node_fails_the_start_with_the_reason(docker_berth: RunningBerth, volume: Path,
                                                                        kernel_image: str) -> None:
    berth = docker_berth
    lost = ready_folder(berth, volume, "lost")
    shutil.rmtree(lost)  # as on a node whose volume is not the storage service's

    done = berth.berth("run", "-i", kernel_image, "-n", "lost", "--mount", "lost", "-c", "print(1)", check=False)

    assert done.returncode != 0
    info = berth.berth_json("session", "info", "lost")
    assert info["status"] == "ERROR" and info["statusReason"] == "failed-to-start", info
    assert f"folder lost ({lost.name}) is missing on volume local" in info["statusDetail"], info
