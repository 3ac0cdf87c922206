"""Storage tokens: signed, expiring, bound to one operation, folder and path."""

from __future__ import annotations

import pytest

from contracts.storage_token import (
    MAX_TTL,
    StorageClaims,
    TokenError,
    mint_token,
    new_key,
    sign_token,
    verify_token,
)

KEY = new_key()
NOW = 1_800_000_000


def _mint(op="download", path="a/b.txt", **kw):
    return mint_token(KEY, folder="vfolder_" + "0" * 32, volume="local", path=path, op=op, user="alice", now=NOW, **kw)[0]


def test_a_genuine_token_verifies_and_carries_its_claims():
    token = _mint(op="upload", max_bytes=123, quota_scope="user:alice")
    claims = verify_token(KEY, token, op="upload", now=NOW + 10, path="a/b.txt")
    assert (claims.user, claims.max_bytes, claims.quota_scope, claims.exp) == ("alice", 123, "user:alice", NOW + 900)


@pytest.mark.parametrize("tamper", ["sig", "payload", "key", "dots", "empty", "long"])
def test_a_forged_or_malformed_token_is_refused(tamper):
    token = _mint()
    payload, sig = token.split(".")
    key = KEY
    if tamper == "sig":
        token = payload + "." + ("A" if sig[0] != "A" else "B") + sig[1:]
    elif tamper == "payload":
        other = _mint(path="other").split(".")[0]
        token = other + "." + sig
    elif tamper == "key":
        key = new_key()
    elif tamper == "dots":
        token = token + ".x"
    elif tamper == "empty":
        token = ""
    else:
        token = "a" * 20000 + "." + sig
    with pytest.raises(TokenError):
        verify_token(key, token, op="download", now=NOW, path="a/b.txt")


def test_an_expired_token_is_refused():
    with pytest.raises(TokenError, match="expired"):
        verify_token(KEY, _mint(ttl=60), op="download", now=NOW + 60, path="a/b.txt")


def test_a_token_is_for_one_operation_and_one_folder():
    token = _mint()
    with pytest.raises(TokenError, match="not 'upload'"):
        verify_token(KEY, token, op="upload", now=NOW, path="a/b.txt")
    with pytest.raises(TokenError, match="another folder"):
        verify_token(KEY, token, op="download", now=NOW, path="a/b.txt", folder="vfolder_" + "1" * 32)


def test_a_file_token_covers_its_path_only_a_tree_token_what_lies_under_it():
    with pytest.raises(TokenError, match="path"):
        verify_token(KEY, _mint(path="a"), op="download", now=NOW, path="a/b.txt")
    tree = _mint(op="list", path="a")
    assert verify_token(KEY, tree, op="list", now=NOW, path="a/b")
    assert verify_token(KEY, _mint(op="archive", path=""), op="archive", now=NOW, path="x/y")
    for outside in ("ab", "b", ""):
        with pytest.raises(TokenError, match="path"):
            verify_token(KEY, tree, op="list", now=NOW, path=outside)


def test_a_lifetime_over_the_limit_is_neither_signed_nor_accepted():
    claims = StorageClaims(folder="f", volume="local", path="", op="list", user="u", iat=NOW, exp=NOW + MAX_TTL + 1, jti="j")
    with pytest.raises(ValueError):
        sign_token(KEY, claims)
    with pytest.raises(ValueError):
        sign_token(b"short", StorageClaims(folder="f", volume="l", path="", op="list", user="u", iat=NOW, exp=NOW + 1, jti="j"))
