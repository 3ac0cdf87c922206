"""A folder holding a directory chain thousands of levels deep (``for i in $(seq 2000); do mkdir d; cd d; done``
in a kernel's rw mount) no longer takes the storage service down. Before, ``os.fwalk`` and ``shutil.rmtree``
raised RecursionError about 1,000 levels down: the usage meter's task died (and the service with it, at every
start), a clone stayed PROVISIONING with no failure report, a purge left ``.work/purge-<id>`` for ever and
the folder PURGING, a delete answered 500. Now the usage counts the file at the bottom, a clone copies the
chain (or, deeper than ``MAX_DEPTH``, is reported failed), a delete and a purge remove everything, the meter
measures the other folders when one fails and goes on after a round that fails, and no fd is left open."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from pathlib import Path

import pytest

from contracts.envelope import Metadata
from contracts.vfolder import OwnerKind, VFolderCreated, VFolderPurgeRequested, new_folder_id
from services.common.tree_walk import MAX_DEPTH
from services.storage.provisioning import Provisioner
from services.storage.quota import Reservations
from services.storage.uploads import UploadStore
from services.storage.usage import UsageMeter
from services.storage.volume import PosixVolume
from tests.support.deep_trees import BOTTOM, bottom_of, deep_tmp, fd_limit, make_chain, open_fds

__all__ = ["deep_tmp"]  # a fixture of the tests

DEEP = 2_000
DEEPER = 20_000
"""Past ``MAX_DEPTH``: counted, deleted and purged all the same, not cloned."""


class _Reporter:
    """Keeps the reports the service sends or posts."""

    def __init__(self) -> None:
        self.reports: list = []

    async def send(self, report: object) -> None:
        self.reports.append(report)

    def post(self, report: object, after: object = None) -> None:
        self.reports.append(report)

    def of(self, kind: str, folder: str) -> list:
        return [r for r in self.reports if r.type_name() == kind and r.folder_id == folder]


def _envelope(folder: str, version: int) -> dict:
    return {"event_id": uuid.uuid4(), "originator_id": folder, "originator_version": version,
            "timestamp": dt.datetime.now(dt.UTC), "metadata": Metadata(actor="test", correlation_id="c")}


def _clone_of(source: str, folder: str) -> VFolderCreated:
    return VFolderCreated(**_envelope(folder, 1), name="clone", volume="local", owner_kind=OwnerKind.USER,
                          owner="alice", domain="default", quota_scope="user:alice", clone_of=source, by="alice")


def _provisioner(volume: PosixVolume) -> tuple[Provisioner, _Reporter]:
    reporter = _Reporter()
    meter = UsageMeter(reporter)  # type: ignore[arg-type]
    return Provisioner(volume, reporter, meter, UploadStore(volume, Reservations())), reporter  # type: ignore[arg-type]


def _with_chain(volume: PosixVolume, depth: int) -> str:
    folder = new_folder_id()
    volume.create(folder)
    make_chain(volume.folder_path(folder), depth)
    return folder


@pytest.mark.parametrize("depth", [DEEP, DEEPER])
def test_the_usage_counts_the_file_at_the_bottom_of_a_deep_chain(deep_tmp: Path, depth: int) -> None:
    volume = PosixVolume("local", deep_tmp / "vol")
    folder = _with_chain(volume, depth)
    (volume.folder_path(folder) / "top.bin").write_bytes(b"1234")
    before = open_fds()
    with fd_limit():  # a walk keeping one fd per level: EMFILE
        assert volume.usage(folder) == (len(BOTTOM) + 4, 2)
    assert open_fds() == before


async def test_a_clone_of_a_chain_2000_deep_copies_it_to_its_bottom(deep_tmp: Path) -> None:
    volume = PosixVolume("local", deep_tmp / "vol")
    source, clone = _with_chain(volume, DEEP), new_folder_id()
    provisioner, reporter = _provisioner(volume)
    before = open_fds()
    with fd_limit():
        await provisioner.created(_clone_of(source, clone))
    assert reporter.of("folder_provisioned", clone) and not reporter.of("folder_provision_failed", clone)
    assert bottom_of(volume.folder_path(clone), DEEP) == BOTTOM
    assert [r.bytes for r in reporter.of("usage_measured", clone)] == [len(BOTTOM)]
    assert list((volume.root / ".work").glob("clone-*")) == []
    assert open_fds() == before


async def test_a_clone_of_a_chain_deeper_than_the_bound_is_reported_failed(deep_tmp: Path) -> None:
    volume = PosixVolume("local", deep_tmp / "vol")
    source, clone = _with_chain(volume, DEEPER), new_folder_id()
    provisioner, reporter = _provisioner(volume)
    before = open_fds()
    with fd_limit():
        await provisioner.created(_clone_of(source, clone))  # not retried: a retry cannot help
    [failed] = reporter.of("folder_provision_failed", clone)
    assert f"directories nested deeper than {MAX_DEPTH} levels (in 'd')" in failed.reason
    assert not reporter.of("folder_provisioned", clone) and not volume.exists(clone)
    assert list((volume.root / ".work").glob("clone-*")) == []  # the partial copy (4,096 levels) removed
    assert bottom_of(volume.folder_path(source), DEEPER) == BOTTOM
    assert open_fds() == before


@pytest.mark.parametrize("depth", [DEEP, DEEPER])
def test_a_delete_removes_a_deep_chain_whole(deep_tmp: Path, depth: int) -> None:
    volume = PosixVolume("local", deep_tmp / "vol")
    folder = _with_chain(volume, depth)
    (volume.folder_path(folder) / "kept.txt").write_text("kept")
    before = open_fds()
    with fd_limit():
        assert volume.remove(folder, "d")
    assert sorted(p.name for p in volume.folder_path(folder).iterdir()) == ["kept.txt"]
    assert open_fds() == before


@pytest.mark.parametrize("depth", [DEEP, DEEPER])
async def test_a_purge_of_a_folder_with_a_deep_chain_finishes(deep_tmp: Path, depth: int) -> None:
    volume = PosixVolume("local", deep_tmp / "vol")
    folder = _with_chain(volume, depth)
    volume.claim(folder)
    provisioner, reporter = _provisioner(volume)
    before = open_fds()
    with fd_limit():
        await provisioner.purge_requested(VFolderPurgeRequested(**_envelope(folder, 2), by="alice"))
    assert reporter.of("folder_purged", folder)
    assert not volume.exists(folder)
    assert list((volume.root / ".work").glob("purge-*")) == []
    assert open_fds() == before


async def test_the_meter_measures_the_other_folders_when_one_fails(
    deep_tmp: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    volume = PosixVolume("local", deep_tmp / "vol")
    deep, broken, plain = _with_chain(volume, DEEP), new_folder_id(), new_folder_id()
    for folder in (broken, plain):
        volume.create(folder)
        (volume.folder_path(folder) / "f.txt").write_text("12345")
    usage = volume.usage

    def failing(folder: str) -> tuple[int, int]:
        if folder == broken:
            raise RuntimeError("a bug measuring this folder")
        return usage(folder)

    monkeypatch.setattr(volume, "usage", failing)
    reporter = _Reporter()
    meter = UsageMeter(reporter)  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="services.storage.usage"):
        await meter.measure_all(volume)
    assert meter.usage_of(deep) == (len(BOTTOM), 1) and meter.usage_of(plain) == (5, 1)
    assert meter.usage_of(broken) is None and not reporter.of("usage_measured", broken)
    assert [r.bytes for r in reporter.of("usage_measured", plain)] == [5]
    assert any(broken in r.getMessage() and r.exc_info for r in caplog.records)


async def test_the_periodic_measure_goes_on_after_a_round_that_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    volume = PosixVolume("local", tmp_path / "vol")
    meter = UsageMeter(_Reporter())  # type: ignore[arg-type]
    stop = asyncio.Event()
    rounds: list[int] = []

    async def measure_all(measured: PosixVolume) -> None:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            raise RecursionError("maximum recursion depth exceeded")  # what os.fwalk raised
        stop.set()

    monkeypatch.setattr(meter, "measure_all", measure_all)
    await asyncio.wait_for(meter.run([volume], 0, stop), 30)
    assert rounds == [0, 1]
