"""Snapshot codecs: a state round-trips; a union of state types keeps each member's type; a snapshot
whose type changed shape (its fingerprint) is not used."""

from __future__ import annotations

from contracts.tenancy import Role
from domain.tenancy import states as tenancy
from services.common.snapshots import MemorySnapshots, codec_of


def _keypair(version: int) -> tenancy.KeypairState:
    return tenancy.KeypairState(id="AK1", version=version, user="u", role=Role.USER, domain="default",
                                resource_policy="default")


def test_a_member_of_a_union_of_states_round_trips_with_its_type() -> None:
    codec = codec_of(tenancy.evolve)
    snapshot = codec.encode(_keypair(7))
    assert snapshot is not None and snapshot.version == 7 and snapshot.type_name == "KeypairState"
    assert codec.decode(snapshot) == _keypair(7)


def test_a_snapshot_of_another_shape_is_not_used() -> None:
    codec = codec_of(tenancy.evolve)
    snapshot = codec.encode(_keypair(7))
    assert snapshot is not None
    assert codec.decode(snapshot._replace(fingerprint="0" * 16)) is None
    assert codec.decode(snapshot._replace(type_name="NoSuchState")) is None
    assert codec.decode(snapshot._replace(state=b"{")) is None


def test_the_memory_store_keeps_the_newest() -> None:
    store, codec = MemorySnapshots(), codec_of(tenancy.evolve)
    for version in (5, 9, 7):
        snapshot = codec.encode(_keypair(version))
        assert snapshot is not None
        store.put_snapshot("AK1", codec.kind, snapshot)
    kept = store.get_snapshot("AK1", codec.kind)
    assert kept is not None and kept.version == 9
