"""Which errors say a dependency is away for now (retried without limit) and which are the
message's own (nak'ed, then dead-lettered): services.common.transient on real exception objects."""

from __future__ import annotations

import aiodocker.exceptions
import eventsourcing.persistence as es
import nats.errors
import psycopg
import psycopg.errors
import psycopg_pool
import pytest

from services.common.transient import UnavailableError, backoff, unavailable_dependency, unavailable_message


def caused(error: Exception, cause: Exception) -> Exception:
    try:
        raise error from cause
    except Exception as exc:  # noqa: BLE001 - building a chain
        return exc


@pytest.mark.parametrize("error", [
    psycopg.OperationalError("connection refused"),
    psycopg_pool.PoolTimeout("couldn't get a connection after 30.00 sec"),
    psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
    psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
    psycopg.errors.SerializationFailure("could not serialize access"),
    psycopg.errors.LockNotAvailable("could not obtain lock"),
    psycopg.InterfaceError("the connection is closed"),
    es.OperationalError("wrapped, no cause"),
    caused(es.OperationalError("wrapped"), psycopg.errors.AdminShutdown("x")),
    caused(RuntimeError("a use case failed"), psycopg.OperationalError("server closed the connection")),
])
def test_postgresql_away(error: Exception) -> None:
    assert unavailable_dependency(error) == "postgresql"


@pytest.mark.parametrize("error", [
    psycopg.errors.ProgramLimitExceeded("index row size exceeds the maximum"),
    caused(es.OperationalError("wrapped"), psycopg.errors.ProgramLimitExceeded("x")),
    psycopg.errors.UniqueViolation("duplicate key"),
    ValueError("bad input"),
    ConnectionError("a plain OSError is not classified"),
    aiodocker.exceptions.DockerError(404, {"message": "no such image"}),
    None,
])
def test_not_an_outage(error: Exception | None) -> None:
    assert unavailable_dependency(error) is None


def test_nats_and_docker_away() -> None:
    assert unavailable_dependency(nats.errors.ConnectionClosedError()) == "nats"
    assert unavailable_dependency(nats.errors.NoRespondersError()) == "nats"
    away = aiodocker.exceptions.DockerError(900, {"message": "Cannot connect to Docker Engine"})
    assert unavailable_dependency(caused(RuntimeError("start failed"), away)) == "docker"
    assert unavailable_dependency(UnavailableError("storage", "volume offline")) == "storage"


def test_backoff_doubles_to_a_cap() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4, 5, 6, 20)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]


def test_a_full_disk_is_said_so_and_other_outages_to_retry() -> None:
    """PostgreSQL whose disk is full answers every write with DiskFull (an outage, waited out and retried); a
    client was told "postgresql is unavailable; retry", which sent its operator to look for a server that was up."""
    full = psycopg.errors.DiskFull('could not extend file "base/16384/16545": No space left on device')
    wrapped = RuntimeError("saving failed")
    wrapped.__cause__ = full
    for error in (full, wrapped):
        assert unavailable_dependency(error) == "postgresql"
        said = unavailable_message("postgresql", error)
        assert "disk is full" in said and "nothing was recorded" in said and "16545" not in said
    assert unavailable_message("postgresql", psycopg.OperationalError("connection refused")) == \
        "postgresql is unavailable; retry"
    assert unavailable_message("nats", nats.errors.NoServersError()) == "nats is unavailable; retry"
