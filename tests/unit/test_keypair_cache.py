"""The gateway's keypair cache as a data structure: bounded, least recently used dropped first, and a
newer reading of a keypair never replaced by an older one."""

from __future__ import annotations

from contracts.tenancy import Role
from services.gateway.auth.keypair_cache import CachedKeypair, KeypairCache
from services.gateway.auth.principal import Principal


def keypair(access_key: str, epoch: int, user: str = "u") -> CachedKeypair:
    return CachedKeypair(secret_key="s", principal=Principal(access_key=access_key, user_id=user, role=Role.USER),
                         epoch=epoch)


def test_it_keeps_at_most_its_size_dropping_the_least_recently_used() -> None:
    cache = KeypairCache(size=2)
    cache.put(keypair("a", 1))
    cache.put(keypair("b", 1))
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put(keypair("c", 1))
    assert len(cache) == 2 and cache.get("b") is None and cache.get("a") is not None


def test_an_older_reading_does_not_replace_a_newer_one() -> None:
    cache = KeypairCache()
    cache.put(keypair("a", 5, user="new"))
    cache.put(keypair("a", 4, user="old"))
    assert cache.get("a") == keypair("a", 5, user="new")
    cache.drop("a")
    assert cache.get("a") is None
