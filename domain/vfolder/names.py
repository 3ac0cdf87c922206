"""Folder names: unique per owner (a user, or a project) among live folders.

``claim`` decides whether a folder may take a name: it may unless another folder of the owner
that is not purged (nor being purged) holds it now. A claim is never released: once its holder
renamed or purged, the next claim supersedes it. The use case saves the claim in the same
transaction as the folder's creation or rename (``contracts.vfolder.VFolderNameClaimed``); two
concurrent claims of one name conflict on the claim's version, so one of them is refused.
"""

from __future__ import annotations

from contracts.envelope import Event
from contracts.vfolder import OwnerKind, VFolderNameClaimed, folder_name_claim_id
from domain.emitting import Context, Emitter
from domain.errors import AlreadyExistsError
from domain.vfolder.state import VFolderState

__all__ = ["claim", "holds"]


def holds(holder: VFolderState | None, name: str) -> bool:
    """Returns True when ``holder`` (the folder a claim names) still holds ``name``."""
    return holder is not None and holder.is_live and holder.name == name


def claim(last: VFolderNameClaimed | None, holder: VFolderState | None, *, owner_kind: OwnerKind, owner: str,
          name: str, folder_id: str, ctx: Context) -> list[Event]:
    """Returns the event by which ``folder_id`` claims ``name`` for its owner; raises
    ``AlreadyExistsError`` while another live folder of the owner has that name."""
    if last is not None and holder is not None and holder.id != folder_id and holds(holder, name):
        raise AlreadyExistsError(f"a folder named {name!r} already exists for {owner_kind.value} {owner!r}")
    emit = Emitter(folder_name_claim_id(owner_kind, owner, name), last.originator_version if last else 0, ctx)
    return [emit(VFolderNameClaimed, owner_kind=owner_kind, owner=owner, name=name, folder_id=folder_id)]
