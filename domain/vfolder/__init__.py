"""The VFolder aggregate: state (``state``), who may do what (``access``), decisions
(``decide``) and unique names per owner (``names``)."""

from domain.vfolder.access import Actor, may_manage, may_see, permission_of
from domain.vfolder.state import Invitation, VFolderState, evolve, replay

__all__ = ["Actor", "Invitation", "VFolderState", "evolve", "may_manage", "may_see", "permission_of", "replay"]
