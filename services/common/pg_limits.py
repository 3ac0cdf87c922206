"""Limits set on every PostgreSQL session Berth opens (see ``limited_dsn``).

A statement, a lock wait or an idle transaction can hold a table — above all the event table,
which every writer locks — for seconds at most, never for ever.
"""

from __future__ import annotations

from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = ["SESSION_LIMITS", "limited_dsn", "session_options"]

SESSION_LIMITS = {
    "statement_timeout": "20s",
    "lock_timeout": "10s",
    "idle_in_transaction_session_timeout": "10s",
    "client_connection_check_interval": "2s",
    "jit": "off",
}
"""Set on every PostgreSQL session Berth opens: no statement, lock wait or idle transaction may
hold a table (above all the event table) for longer than seconds, and a backend whose client is
gone stops within seconds even in the middle of a statement (PostgreSQL 14 and later). No JIT:
Berth's statements are short, and on a table without statistics yet (a young or fast-grown event
table) PostgreSQL estimated a read of 1,000 aggregates' events costly enough to compile it: 130 ms,
of which 123 ms compiling, for a read of 4 ms."""


def session_options() -> str:
    """Returns libpq ``options`` that apply ``SESSION_LIMITS``."""
    return " ".join(f"-c {name}={value}" for name, value in SESSION_LIMITS.items())


def limited_dsn(dsn: str) -> str:
    """Returns ``dsn`` with ``SESSION_LIMITS`` added to its ``options`` (kept when already set)."""
    options = str(conninfo_to_dict(dsn).get("options") or "")
    if "statement_timeout" in options:
        return dsn
    return make_conninfo(dsn, options=f"{options} {session_options()}".strip())
