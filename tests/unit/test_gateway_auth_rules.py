"""Gateway auth rules that need no database: key formats, roles, the date window, header parsing."""

from __future__ import annotations

import datetime as dt

import pytest

from contracts.tenancy import DEFAULT_DOMAIN, Role
from services.gateway.auth.keypairs import new_access_key, new_secret_key
from services.gateway.auth.principal import AuthError, Principal
from services.gateway.auth.verify import Authenticator

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def test_key_formats() -> None:
    keys = {new_access_key() for _ in range(50)}
    assert len(keys) == 50
    for key in keys:
        assert key.startswith("AKIA") and len(key) == 20 and key.isalnum() and key == key.upper()
    secret = new_secret_key()
    assert len(secret) == 40 and set(secret) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@pytest.mark.parametrize("role, sees_others", [(Role.USER, False), (Role.ADMIN, True), (Role.SUPERADMIN, True)])
def test_who_sees_whose_sessions(role: Role, sees_others: bool) -> None:
    principal = Principal(access_key="AKIAME", user_id="me", role=role)
    assert principal.may_see("AKIAME", DEFAULT_DOMAIN, role)
    assert principal.may_see("AKIAOTHER", DEFAULT_DOMAIN, Role.USER) is sees_others
    assert principal.may_see("AKIAOTHER", DEFAULT_DOMAIN, None) is sees_others  # an owner without a known keypair
    assert principal.may_see("AKIAOTHER", DEFAULT_DOMAIN, Role.SUPERADMIN) is (role is Role.SUPERADMIN)


def _authenticator() -> Authenticator:
    return Authenticator(pool=None, clock=lambda: NOW)  # type: ignore[arg-type] - these checks precede any query


async def _refusal(headers: dict[str, str]) -> str:
    base = {"authorization": "BackendAI signMethod=HMAC-SHA256, credential=AKIAX:abc123", "host": "h"}
    with pytest.raises(AuthError) as refused:
        await _authenticator().authenticate(method="POST", path="/graphql", headers={**base, **headers}, body=b"")
    return str(refused.value)


@pytest.mark.parametrize("date", [NOW - dt.timedelta(minutes=15, seconds=1), NOW + dt.timedelta(minutes=16),
                                  dt.datetime(2025, 12, 31, 12, 0)])
async def test_dates_outside_the_window_are_refused(date: dt.datetime) -> None:
    assert await _refusal({"x-backendai-date": date.isoformat()}) == "date outside the allowed window"


async def test_missing_or_malformed_credentials_are_refused() -> None:
    assert "missing X-BackendAI-Date" in await _refusal({})
    assert "malformed X-BackendAI-Date" in await _refusal({"x-backendai-date": "yesterday"})
    assert "missing credentials" in await _refusal({"authorization": ""})
    assert "malformed Authorization header" in await _refusal({"authorization": "Basic dXNlcg=="})
    assert "missing Host" in await _refusal({"x-backendai-date": NOW.isoformat(), "host": ""})
