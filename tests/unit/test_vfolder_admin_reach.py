"""How far a domain admin reaches over personal folders, pure (``domain.vfolder.access``): never over a
superadmin's (``toward``), and never to a permission of its own on another user's (a share or an
invitation to itself: ``check_not_self_granted``); a superadmin keeps its reach, an owner its folder."""

from __future__ import annotations

import pytest

from contracts.tenancy import Role
from domain.errors import ForbiddenError, NotFoundError
from domain.vfolder import decide as d
from domain.vfolder.access import may_manage, may_see, owner_role_matters, toward
from tests.unit.test_vfolder_domain import ADMIN, ALICE, actor, ctx, folder

SUPERADMIN = actor("admin", Role.SUPERADMIN, projects=())
OTHER_ADMIN = actor("carol", Role.ADMIN, projects=(), domain="lab")


def test_a_domain_admin_stands_toward_a_superadmins_folder_as_a_user() -> None:
    superadmins = folder(SUPERADMIN)
    assert owner_role_matters(superadmins, ADMIN)
    assert not any(owner_role_matters(superadmins, who) for who in (SUPERADMIN, ALICE, OTHER_ADMIN))
    faced = toward(superadmins, ADMIN, Role.SUPERADMIN)
    assert not may_see(superadmins, faced) and not may_manage(superadmins, faced)
    with pytest.raises(NotFoundError):
        d.rename(superadmins, "x", faced, ctx())
    assert toward(superadmins, SUPERADMIN, Role.SUPERADMIN) is SUPERADMIN
    for role in (Role.USER, Role.ADMIN, None):  # a domain user's folder (an unknown owner: one of the domain's)
        assert toward(folder(ALICE), ADMIN, role) is ADMIN


@pytest.mark.parametrize("manager", [ADMIN, SUPERADMIN], ids=["admin", "superadmin"])
def test_a_manager_gives_itself_no_permission_on_a_users_folder(manager) -> None:
    alices = folder(ALICE)
    with pytest.raises(ForbiddenError, match="no permission"):
        d.share(alices, manager.user, "ro", manager, ctx(), user_domain="default")
    with pytest.raises(ForbiddenError, match="no permission"):
        d.invite(alices, "i1", manager.user, "ro", manager, ctx(), invitee_domain="default")
    assert d.share(alices, "bob", "ro", manager, ctx(), user_domain="default")  # others: as before
