"""The enqueue check's tenancy facts: one catch-up read when the cached user and keypair still name
the project and policy they name now, a second read when they changed, never a stale fact."""

from __future__ import annotations

from contracts import tenancy_commands as tc
from contracts.tenancy import Role, policy_id, user_id
from services.application.context import make_context
from services.application.tenancy import Tenancy, ensure_defaults
from services.gateway.auth.principal import Principal
from services.gateway.sessions.enqueue import _load

AK = "AKIATEST0000000001"


class CountingTenancy(Tenancy):
    def __init__(self) -> None:
        self.reads = 0
        super().__init__(None)

    def newer_than(self, known):  # type: ignore[no-untyped-def]
        self.reads += 1
        return super().newer_than(known)


def _tenancy() -> CountingTenancy:
    tenancy = CountingTenancy()
    ensure_defaults(None, app=tenancy)
    ctx = make_context("test")
    tenancy.handle(user_id("alice"), tc.CreateUser(name="alice", domain="default", projects=["default"]), ctx)
    tenancy.handle(AK, tc.CreateKeypair(user="alice"), ctx)
    tenancy.handle(policy_id("strict"), tc.CreateResourcePolicy(
        name="strict", limits=tc.LimitsChange(max_pending_session_count=1)), ctx)
    return tenancy


def test_a_warm_load_catches_up_with_one_read_and_sees_a_policy_change() -> None:
    tenancy = _tenancy()
    principal = Principal(access_key=AK, user_id="alice", role=Role.USER)
    _load(tenancy, principal, None, "default")  # warms the cache

    tenancy.reads = 0
    first = _load(tenancy, principal, None, "default")
    assert tenancy.reads == 1, "every fact caught up in one read"
    assert first.limits.max_pending_session_count == 0 and first.project_name == "default"

    tenancy.handle(AK, tc.ChangeKeypairPolicy(resource_policy="strict"), make_context("admin"))
    tenancy.reads = 0
    changed = _load(tenancy, principal, None, "default")
    assert changed.limits.max_pending_session_count == 1, "the new policy, not the cached guess"
    assert tenancy.reads <= 2
