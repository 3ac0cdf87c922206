"""The storage fields of a resource policy: max_vfolder_count, max_quota_scope_size and
allowed_vfolder_hosts (validated by the tenancy domain), and their defaults."""

from __future__ import annotations

import pytest

from contracts.tenancy import DEFAULT_MAX_VFOLDER_COUNT, KeypairLimits
from contracts.tenancy_commands import LimitsChange
from contracts.vfolder import VolumePermission
from domain.errors import InvalidRequestError
from domain.tenancy.values import apply_limits


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
