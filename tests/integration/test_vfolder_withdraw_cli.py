"""``berth vfolder withdraw FOLDER INVITATION`` as a subprocess against a real gateway: the inviter
withdraws a pending invitation, which then leaves the invitee's list and cannot be accepted; anyone
else is refused. The read models are brought up to date by hand after each change."""

from __future__ import annotations

from tests.support.cli import as_json, berth
from tests.support.folders import seed_folder
from tests.support.gateway import Keys, clean_streams, keys, read_models, served  # noqa: F401 - fixtures
from tests.support.tenancy import catch_up


async def test_the_inviter_withdraws_an_invitation(served: str, keys: Keys, pg_dsn: str) -> None:
    alice, bob = keys.alice, keys.bob
    folder_id = seed_folder(pg_dsn, "work")
    catch_up(pg_dsn)
    invitation = (await as_json(served, alice, "vfolder", "invite", "work", "bob", "--permission", "rw"))["id"]
    catch_up(pg_dsn)
    assert [row["id"] for row in await as_json(served, bob, "vfolder", "invitations")] == [invitation]

    _, _, err = await berth(served, bob, "vfolder", "withdraw", folder_id, invitation, ok=False)
    assert "not found" in err  # the invitee does not see the folder (it rejects instead)
    _, _, err = await berth(served, alice, "vfolder", "withdraw", "work", "nope", ok=False)
    assert "no invitation 'nope'" in err

    withdrawn = await as_json(served, alice, "vfolder", "withdraw", "work", invitation)
    assert withdrawn == {"invitation": invitation, "folder": folder_id, "state": "withdrawn"}
    catch_up(pg_dsn)
    assert await as_json(served, bob, "vfolder", "invitations") == []
    (ended,) = await as_json(served, bob, "vfolder", "invitations", "--all")
    assert (ended["id"], ended["state"]) == (invitation, "withdrawn")
    _, _, err = await berth(served, bob, "vfolder", "accept", invitation, ok=False)
    assert "withdrawn" in err
