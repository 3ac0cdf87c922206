"""Folders recorded through the folder use cases (``services.application.vfolders``), in the state a
test needs (ready, provisioning, trashed, shared, over quota), with the storage service's reports
played by hand (no storage service runs); a volume root and folder directories laid out as the
storage service lays them out, owned by the kernel user."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from contracts.envelope import utc_now
from contracts.tenancy import Role
from contracts.storage_reports import FolderProvisionedReport, UsageMeasuredReport
from contracts.vfolder import VolumePermission
from domain.vfolder import Actor
from domain.vfolder.decide import NewFolder
from services.application.context import make_context
from services.agent.backends.docker.confinement import kernel_user
from services.application.vfolders import VFolders, report_context_id
from tests.support.waiting import wait_for

__all__ = ["created_with_cli", "folder_directory", "seed_folder", "set_project_limit", "volume"]

ALL_VOLUMES = {"local": frozenset(VolumePermission)}


def _admin(domain: str = "default") -> Actor:
    return Actor(user="admin", role=Role.SUPERADMIN, domain=domain, volumes=ALL_VOLUMES)


def set_project_limit(dsn: str, project: str, limit_bytes: int) -> None:
    """Sets the bytes a project's folders may hold together (its quota scope's limit)."""
    with VFolders(dsn) as app:
        app.set_project_storage_limit(project, limit_bytes, _admin(), make_context("test"))


def seed_folder(dsn: str, name: str, *, owner: str = "alice", owner_kind: str = "user", domain: str = "default",
                permission: str = "rw", status: str = "ready", shares: dict[str, str] | None = None,
                unshare: tuple[str, ...] = (), quota: int = 0, usage: int = 0) -> str:
    """Records a folder of ``owner`` (a user or a project) and returns its id: ``ready`` (provisioned),
    ``provisioning`` or ``trashed``; shared with ``shares`` (user -> permission), then unshared from
    ``unshare``; with a cap of ``quota`` bytes and ``usage`` bytes used."""
    admin = _admin(domain)
    actor = Actor(user=owner, domain=domain, volumes=ALL_VOLUMES) if owner_kind == "user" else admin
    ctx = make_context("test")
    with VFolders(dsn) as app:
        folder_id, _ = app.create(actor, NewFolder(name=name, volume="local", owner_kind=owner_kind, owner=owner,
                                                   domain=domain, permission=permission), ctx, owned=0)
        if status != "provisioning":
            _report(app, FolderProvisionedReport, folder_id)
        for user, granted in (shares or {}).items():
            app.share(folder_id, user, granted, admin, ctx)
        for user in unshare:
            app.unshare(folder_id, user, admin, ctx)
        if quota:
            app.set_quota(folder_id, quota, admin, ctx)
        if usage:
            _report(app, UsageMeasuredReport, folder_id, bytes=usage, files=1)
        if status == "trashed":
            app.trash(folder_id, admin, ctx)
    return folder_id


def created_with_cli(berth: Any, name: str, timeout: float = 60) -> dict[str, Any]:
    """Creates folder ``name`` with ``berth vfolder create`` (``berth``: a running ``berth up`` of the e2e
    tests) and returns its ``berth vfolder info`` once its storage service made it ready."""
    berth.berth("vfolder", "create", name)

    def ready() -> dict[str, Any] | None:
        info = berth.berth_json("vfolder", "info", name)
        return info if info["status"] == "ready" else None

    return wait_for(ready, timeout=timeout, interval=0.2, message=f"folder {name} never became ready")


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    """A volume root with its ``folders/``."""
    root = tmp_path / "volume"
    (root / "folders").mkdir(parents=True)
    return root


def folder_directory(volume: Path, folder_id: str, files: dict[str, str] | None = None) -> Path:
    """Makes a folder's directory (with ``files``), owned by the kernel user as the storage service makes it."""
    directory = volume / "folders" / folder_id
    directory.mkdir()
    for name, content in (files or {}).items():
        (directory / name).write_text(content)
    user = kernel_user("auto")
    for path in (directory, *directory.iterdir()):
        os.chown(path, user.uid, user.gid)
    return directory


def _report(app: VFolders, kind: type, folder_id: str, **fields: object) -> None:
    report = kind(report_id=uuid.uuid4().hex, volume="local", folder_id=folder_id, observed_at=utc_now(), **fields)
    app.apply_report(report, make_context("storage", causation_id=report_context_id(report)))
