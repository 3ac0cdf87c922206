"""The storage fields of a resource policy: max_vfolder_count, max_quota_scope_size and
allowed_vfolder_hosts (validated by the tenancy domain), their defaults, and what an upload may
add under the scope's limit and the folder's cap."""

from __future__ import annotations

import pytest

from contracts.tenancy import DEFAULT_MAX_VFOLDER_COUNT, KeypairLimits
from contracts.tenancy_commands import LimitsChange
from contracts.vfolder import VolumePermission
from domain.errors import InvalidRequestError
from domain.tenancy.values import apply_limits
from services.gateway.vfolders.transfers import remaining_bytes


def test_the_defaults_allow_everything_on_the_default_volume() -> None:
    limits = KeypairLimits()
    assert limits.max_vfolder_count == DEFAULT_MAX_VFOLDER_COUNT and limits.max_quota_scope_size == 0
    assert set(limits.allowed_vfolder_hosts["local"]) == set(VolumePermission)


def test_storage_limits_are_set_and_validated() -> None:
    limits = apply_limits(KeypairLimits(), LimitsChange(max_vfolder_count=3, max_quota_scope_size=10**12,
                                                        allowed_vfolder_hosts={"fast": ["UPLOAD-FILE", "upload-file"]}))
    assert (limits.max_vfolder_count, limits.max_quota_scope_size) == (3, 10**12)
    assert limits.allowed_vfolder_hosts == {"fast": [VolumePermission.UPLOAD_FILE]}
    with pytest.raises(InvalidRequestError, match="volume permission"):
        apply_limits(KeypairLimits(), LimitsChange(allowed_vfolder_hosts={"fast": ["root"]}))
    with pytest.raises(InvalidRequestError, match="volume"):
        apply_limits(KeypairLimits(), LimitsChange(allowed_vfolder_hosts={"a b": []}))
    with pytest.raises(InvalidRequestError, match="max_quota_scope_size"):
        apply_limits(KeypairLimits(), LimitsChange(max_quota_scope_size=-1))


@pytest.mark.parametrize(("scope_limit", "scope_used", "cap", "used", "left"), [
    (0, 0, 0, 0, None),          # no limit anywhere
    (100, 30, 0, 0, 70),         # the scope's
    (0, 0, 50, 45, 5),           # the folder's cap
    (100, 30, 50, 45, 5),        # the least of both
    (100, 130, 0, 0, 0),         # over already (measured after writes from a session): nothing left
])
def test_an_upload_may_add_what_the_scope_and_the_folder_have_left(
        scope_limit: int, scope_used: int, cap: int, used: int, left: int | None) -> None:
    assert remaining_bytes(scope_limit, scope_used, cap, used) == left
