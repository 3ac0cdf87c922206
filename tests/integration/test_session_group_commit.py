"""Sessions.request_many: concurrent session requests saved in one transaction, each with the outcome
it would have had alone (a position, or its refusal), on the real PostgreSQL event store."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Iterator

import pytest

from contracts import commands as c
from contracts.session import KernelSpec, SessionSpec
from domain.errors import AlreadyExistsError
from services.application.context import make_context
from services.application.sessions import Sessions
from services.sdk.client import BerthAPIError
from tests.support.gateway import CREATE, Keys, client_for, gateway, keys, read_models  # noqa: F401 - fixtures


@pytest.fixture
def sessions(pg_dsn: str) -> Iterator[Sessions]:
    app = Sessions(pg_dsn)
    yield app
    app.close()


def _request(name: str, owner: str = "AK1") -> tuple[str, c.RequestSession, object]:
    session_id = uuid.uuid4().hex
    spec = SessionSpec(name=name, image="img", kernels=[KernelSpec(kernel_id=f"{session_id}-k0",
                                                                   slots={"cpu": Decimal(1), "mem": Decimal(2**30)})])
    return session_id, c.RequestSession(owner=owner, spec=spec), make_context(owner)


def _transactions(sessions: Sessions) -> set[int]:
    """The PostgreSQL transaction ids that wrote the event table's rows."""
    with sessions.recorder.datastore.get_connection() as conn, conn.cursor() as cur:  # type: ignore[attr-defined]
        cur.execute("SELECT DISTINCT xmin::text::bigint AS tx FROM berth_events")
        return {row["tx"] for row in cur.fetchall()}


def test_disjoint_requests_are_saved_in_one_transaction(sessions: Sessions) -> None:
    requests = [_request(f"s{i}") for i in range(20)]

    outcomes = sessions.request_many(requests)  # type: ignore[arg-type]

    assert all(isinstance(o, int) for o in outcomes), outcomes
    assert len(set(outcomes)) == 20, "each request has its own position"
    assert len(_transactions(sessions)) == 1, "one transaction for the lot"
    for (session_id, command, _), position in zip(requests, outcomes):
        state = sessions.get(session_id)
        assert state is not None and state.spec.name == command.spec.name
        assert position == max(n.id for n in sessions.recorder.select_notifications(1, 1000)  # type: ignore[attr-defined]
                               if n.originator_id == session_id)


def test_two_requests_for_one_name_get_one_session_and_one_refusal(sessions: Sessions) -> None:
    requests = [_request("same"), _request("other"), _request("same")]

    outcomes = sessions.request_many(requests)  # type: ignore[arg-type]

    assert isinstance(outcomes[0], int) and isinstance(outcomes[1], int)
    assert isinstance(outcomes[2], AlreadyExistsError), outcomes[2]
    assert sessions.get(requests[2][0]) is None, "the refused request recorded nothing"


def test_a_request_refused_alone_does_not_fail_the_group(sessions: Sessions) -> None:
    taken = _request("taken")
    assert isinstance(sessions.request_many([taken])[0], int)  # type: ignore[list-item]
    requests = [_request("a"), _request("taken"), _request("b")]

    outcomes = sessions.request_many(requests)  # type: ignore[arg-type]

    assert isinstance(outcomes[0], int) and isinstance(outcomes[2], int)
    assert isinstance(outcomes[1], AlreadyExistsError)
    assert sessions.get(requests[0][0]) is not None and sessions.get(requests[2][0]) is not None


# --- through the API: concurrent createSession calls ---------------------------------------------------


async def test_concurrent_create_session_calls_each_get_their_outcome(client_for, keys: Keys) -> None:
    alice = client_for(keys.alice)
    names = [f"c{i}" for i in range(24)] + ["twin", "twin"]

    async def create(name: str) -> str | BerthAPIError:
        try:
            return (await alice.execute(CREATE, {"input": {"name": name}}))["createSession"]["sessionId"]
        except BerthAPIError as exc:
            return exc

    outcomes = await asyncio.gather(*(create(name) for name in names))

    created = [o for o in outcomes if isinstance(o, str)]
    refused = [o for o in outcomes if isinstance(o, BerthAPIError)]
    assert len(created) == len(set(created)) == 25, outcomes
    assert [e.code for e in refused] == ["CONFLICT"] and "twin" in refused[0].message


def test_a_group_with_an_id_that_exists_still_gives_each_its_own_outcome(sessions: Sessions) -> None:
    existing = _request("first")
    assert isinstance(sessions.request_many([existing])[0], int)  # type: ignore[list-item]
    again = (existing[0], _request("second")[1], existing[2])  # a request for an id already recorded
    fresh = _request("third")

    outcomes = sessions.request_many([fresh, again])  # type: ignore[list-item]

    assert isinstance(outcomes[0], int), "the other request of the group is recorded"
    assert isinstance(outcomes[1], Exception), "the one for an existing id is refused, as alone"
    assert sessions.get(fresh[0]) is not None
    assert sessions.get(existing[0]).spec.name == "first"  # type: ignore[union-attr]


def test_a_group_reads_the_claims_of_its_names_with_one_statement(sessions: Sessions) -> None:
    recorder = sessions.recorder
    reads: list[str] = []
    select_events, select_last = recorder.select_events, recorder.select_last  # type: ignore[attr-defined]
    recorder.select_events = lambda *a, **k: reads.append("one") or select_events(*a, **k)  # type: ignore[method-assign]
    recorder.select_last = lambda ids: reads.append(f"{len(ids)} at once") or select_last(ids)  # type: ignore[attr-defined]

    outcomes = sessions.request_many([_request(f"n{i}") for i in range(16)])  # type: ignore[arg-type]

    assert all(isinstance(o, int) for o in outcomes), outcomes
    assert reads == ["16 at once"]
    again = sessions.request_many([_request("n3"), _request("fresh")])  # type: ignore[arg-type]
    assert isinstance(again[0], AlreadyExistsError) and isinstance(again[1], int), again
