"""An Authorization header names an access key of letters and digits only: anything else (NUL, a lone
surrogate, punctuation, a key longer than 64) is a malformed header, refused before any lookup."""

from __future__ import annotations

import pytest

from services.gateway.auth.keypairs import new_access_key
from services.sdk.signing import SignatureError, parse_authorization

SIGNATURE = "0123456789abcdef"


@pytest.mark.parametrize("access_key", ["AK\x00IA", "AKIA\ud800", "AKIA\udfff0", "AKIA-1", "AKIA_1", "AKIA\u00e91",
                                        "AKIA\u0661", "AKIA\t1", "A" * 65])
def test_an_access_key_of_anything_but_letters_and_digits_is_malformed(access_key: str) -> None:
    with pytest.raises(SignatureError, match="malformed Authorization header"):
        parse_authorization(f"BackendAI signMethod=HMAC-SHA256, credential={access_key}:{SIGNATURE}")


@pytest.mark.parametrize("access_key", [new_access_key(), "AKIAEXAMPLE000000000", "ak1", "A" * 64])
def test_an_access_key_of_letters_and_digits_is_parsed(access_key: str) -> None:
    header = f"BackendAI signMethod=HMAC-SHA256, credential={access_key}:{SIGNATURE}"
    assert parse_authorization(header) == (access_key, SIGNATURE)
