"""A domain admin's reads of sessions hide the superadmins' sessions without a scan: with thousands of sessions
and keypairs, a page of the listing and a reference lookup still read the sessions through their indexes, and
the owner's keypair role is a probe of ``keypairs_view``'s primary key per row read
(``projections.queries.sessions.OWNER_ROLE``), never a scan of every keypair."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import psycopg
import pytest

from projections.queries.sessions import list_query
from projections.session_refs import match_query
from tests.support.gateway import create_read_models

SESSIONS = 6000
KEYPAIRS = 3000
SUPERADMINS = 3
PAGES = {
    "oldest first": {"statuses": None, "after": None, "newest_first": False},
    "newest first, running": {"statuses": ["RUNNING"], "after": None, "newest_first": True},
    "after a cursor": {"statuses": None, "after": (dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "8" * 32),
                       "newest_first": False},
}


@pytest.fixture
def history(pg_dsn: str) -> str:
    """Returns the DSN of fresh read models with ``SESSIONS`` sessions of ``KEYPAIRS`` keypairs in two domains, the
    first ``SUPERADMINS`` keypairs a superadmin's, one session in ten running."""
    create_read_models(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO keypairs_view (access_key, user_name, domain, role, resource_policy, is_active, created_at,"
            " updated_at, version, last_position) SELECT 'AK' || i, 'u' || i, CASE WHEN i %% 3 = 0 THEN 'lab'"
            " ELSE 'default' END, CASE WHEN i < %s THEN 'superadmin' ELSE 'user' END, 'default', true, now(), now(),"
            " 1, i FROM generate_series(0, %s) AS i", (SUPERADMINS, KEYPAIRS - 1))
        conn.execute(
            "INSERT INTO sessions (session_id, name, owner, image, session_type, status, requested_slots, cluster_size,"
            " status_history, created_at, updated_at, version, last_position, domain)"
            " SELECT md5(i::text), 'job-' || i, 'AK' || (i %% %s), 'img', 'interactive',"
            " CASE WHEN i %% 10 = 0 THEN 'RUNNING' ELSE 'TERMINATED' END, '{}', 1, '{}',"
            " timestamptz '2026-01-01' + i * interval '1 second', now(), 1, i,"
            " CASE WHEN (i %% %s) %% 3 = 0 THEN 'lab' ELSE 'default' END FROM generate_series(1, %s) AS i",
            (KEYPAIRS, KEYPAIRS, SESSIONS))
        conn.execute("ANALYZE sessions")
        conn.execute("ANALYZE keypairs_view")
    return pg_dsn


def _plan(dsn: str, query: str, params: Any) -> str:
    with psycopg.connect(dsn) as conn:
        return "\n".join(row[0] for row in conn.execute("EXPLAIN " + query, params))


def _by_index(plan: str) -> bool:
    """Returns True when the plan reads ``sessions`` only through indexes and ``keypairs_view`` only by its
    primary key."""
    return ("Seq Scan" not in plan and "keypairs_view_pkey" in plan
            and re.search(r"(Index Scan(?: Backward)? using \w+ on sessions|Bitmap Index Scan on sessions_)", plan)
            is not None)


@pytest.mark.parametrize("page", sorted(PAGES))
def test_an_admins_page_hides_superadmins_through_indexes(history: str, page: str) -> None:
    plan = _plan(history, *list_query(owner=None, domain="default", first=50, hide_superadmins=True, **PAGES[page]))
    assert _by_index(plan), plan


@pytest.mark.parametrize("ref", ["job-42", "abcd12"])
def test_an_admins_reference_lookup_hides_superadmins_through_indexes(history: str, ref: str) -> None:
    plan = _plan(history, *match_query(ref, domain="default", hide_superadmins=True))
    assert _by_index(plan), plan
