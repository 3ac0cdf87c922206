"""The checks several folder decisions share (``decide``, ``invitations``): a permission's value,
a folder not in the trash nor purged, and another user of the folder's domain."""

from __future__ import annotations

from contracts.vfolder import OwnerKind, VFolderPermission, VFolderStatus
from domain.errors import InvalidRequestError, InvalidTransitionError
from domain.vfolder.state import VFolderState

__all__ = ["check_live", "check_other_user", "valid_permission"]


def valid_permission(value: str | VFolderPermission) -> VFolderPermission:
    """Returns the permission ``value`` names; InvalidRequestError when it names none."""
    try:
        return VFolderPermission(value)
    except ValueError:
        raise InvalidRequestError(f"unknown permission {value!r}: use ro, rw or wd") from None


def check_live(state: VFolderState, what: str) -> None:
    """Raises InvalidTransitionError when the folder is in the trash or purged (``what``: the refused act)."""
    if state.status in (VFolderStatus.TRASHED, VFolderStatus.PURGING, VFolderStatus.PURGED):
        raise InvalidTransitionError(f"folder {state.name!r} is {state.status.value}: cannot {what}")


def check_other_user(state: VFolderState, user: str, user_domain: str | None) -> None:
    """Raises InvalidRequestError unless ``user`` is a user of the folder's domain (``user_domain``
    None: no such user) other than the owner of a user folder."""
    if user_domain is None or user_domain != state.domain:
        raise InvalidRequestError(f"no user {user!r} in domain {state.domain!r}")
    if state.owner_kind is OwnerKind.USER and user == state.owner:
        raise InvalidRequestError(f"{user!r} owns folder {state.name!r}")
