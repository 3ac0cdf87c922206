"""The limits epoch (``services.gateway.auth.limits_epoch``) on real PostgreSQL: raised in the transaction
of every stored keypair or policy event, whoever stores it, and by no other event; a keypair's
deactivation (which holds the keypair epoch's row while it stores its event) still goes through."""

from __future__ import annotations

import psycopg
import pytest

from contracts import tenancy_commands as tc
from contracts.tenancy import policy_id
from services.application.context import make_context
from services.application.tenancy import Tenancy, ensure_defaults
from services.gateway.auth.keypairs import create_keypair, deactivate_keypair, ensure_keypairs_table
from services.gateway.auth.limits_epoch import LIMITS_EPOCH, LIMITS_EVENTS_TRIGGER_DDL
from tests.support.gateway import create_user


def limits_epoch(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f"SELECT {LIMITS_EPOCH}").fetchone()
    assert row is not None
    return row[0]


@pytest.fixture
def tenancy(pg_dsn: str):
    ensure_keypairs_table(pg_dsn)
    with Tenancy(pg_dsn) as app:  # creates the event table
        ensure_defaults(pg_dsn, app=app)
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(LIMITS_EVENTS_TRIGGER_DDL)
            conn.execute(LIMITS_EVENTS_TRIGGER_DDL)  # a second gateway's start keeps the one trigger
            count = conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'berth_events_limits_epoch'").fetchone()
        assert count == (1,)
        yield app


def test_keypair_and_policy_events_raise_the_limits_epoch_and_no_other(tenancy: Tenancy, pg_dsn: str) -> None:
    ctx = make_context("test")
    start = limits_epoch(pg_dsn)
    create_user(pg_dsn, "carol")  # a user event
    assert limits_epoch(pg_dsn) == start
    tenancy.handle(policy_id("tight"), tc.CreateResourcePolicy(name="tight", limits=tc.LimitsChange(rate_limit=5)), ctx)
    after_create = limits_epoch(pg_dsn)
    assert after_create > start
    tenancy.handle(policy_id("tight"), tc.UpdateResourcePolicy(limits=tc.LimitsChange(rate_limit=1)), ctx)
    after_update = limits_epoch(pg_dsn)
    assert after_update > after_create
    access_key, _ = create_keypair(pg_dsn, "carol")
    after_keypair = limits_epoch(pg_dsn)
    assert after_keypair > after_update
    tenancy.handle(access_key, tc.ChangeKeypairPolicy(resource_policy="tight"), ctx)
    after_change = limits_epoch(pg_dsn)
    assert after_change > after_keypair
    deactivate_keypair(tenancy, pg_dsn, access_key, ctx)  # the keypairs row and the event, two connections
    assert limits_epoch(pg_dsn) > after_change


def test_a_failed_save_leaves_the_limits_epoch_as_it_was(tenancy: Tenancy, pg_dsn: str) -> None:
    ctx = make_context("test")
    tenancy.handle(policy_id("tight"), tc.CreateResourcePolicy(name="tight", limits=tc.LimitsChange(rate_limit=5)), ctx)
    start = limits_epoch(pg_dsn)
    with psycopg.connect(pg_dsn) as conn:  # a policy event stored, then rolled back with its transaction
        conn.execute(
            "INSERT INTO berth_events (originator_id, originator_version, topic, state)"
            " VALUES ('policy:ghost', 1, 'policy.created', '{}')")
        assert conn.execute(f"SELECT {LIMITS_EPOCH}").fetchone() == (start + 1,)
        conn.rollback()
    assert limits_epoch(pg_dsn) == start
