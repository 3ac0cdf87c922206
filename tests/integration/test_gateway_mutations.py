"""Gateway mutations: createSession and terminateSession against the real event store.

A refused mutation answers with a GraphQL error code and records no event.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from contracts.status import SessionStatus, SessionType
from services.application.sessions import Sessions
from services.sdk.client import BerthAPIError
from tests.support.gateway import (  # noqa: F401 - fixtures
    CREATE, TERMINATE, Keys, client_for, count_events, gateway, keys, read_models,
)


@pytest.fixture
def sessions(pg_dsn: str):
    app = Sessions(pg_dsn)
    yield app
    app.close()


async def test_create_session_records_the_request_with_defaults(client_for, keys: Keys, sessions: Sessions) -> None:
    result = (await client_for(keys.alice).execute(CREATE, {"input": {}}))["createSession"]
    session_id, position = result["sessionId"], result["position"]
    assert len(session_id) == 32 and position > 0
    state = sessions.get(session_id)
    assert state is not None
    assert state.owner == keys.alice[0]
    assert state.spec.name == f"session-{session_id[:8]}"
    assert state.spec.image == "berth/python:latest" and state.spec.session_type is SessionType.INTERACTIVE
    assert state.status is SessionStatus.PENDING
    assert [(k.kernel_id, k.cluster_role) for k in state.kernels] == [(f"{session_id}-k0", "main")]
    assert state.kernels[0].slots == {"cpu": Decimal(1), "mem": Decimal(1024**3)}
    event = sessions.load(session_id)[0]
    assert event.metadata.actor == keys.alice[0]
    assert sessions.position() == position


async def test_create_session_with_options(client_for, keys: Keys, sessions: Sessions) -> None:
    data = {"name": "train", "image": "berth/torch:2", "sessionType": "BATCH", "clusterSize": 2,
            "startupCommand": "python train.py",
            "resources": [{"slot": "cpu", "amount": "2"}, {"slot": "mem", "amount": "4g"},
                          {"slot": "cuda.device", "amount": "1"}]}
    session_id = (await client_for(keys.bob).execute(CREATE, {"input": data}))["createSession"]["sessionId"]
    state = sessions.get(session_id)
    assert state is not None
    assert (state.spec.name, state.spec.image, state.spec.session_type, state.spec.startup_command) == (
        "train", "berth/torch:2", SessionType.BATCH, "python train.py")
    assert [(k.kernel_id, k.cluster_role) for k in state.kernels] == [
        (f"{session_id}-k0", "main"), (f"{session_id}-k1", "sub")]
    assert state.kernels[1].slots == {"cpu": Decimal(2), "mem": Decimal(4 * 1024**3), "cuda.device": Decimal(1)}


@pytest.mark.parametrize("data, fragment", [
    ({"resources": [{"slot": "cpu", "amount": "-1"}]}, "cpu"),
    ({"resources": [{"slot": "foo.bar", "amount": "1"}]}, "unknown resource slot 'foo.bar'"),
    ({"resources": [{"slot": "cpu", "amount": "1.2.3"}]}, "cannot parse amount"),
    ({"resources": [{"slot": "mem", "amount": "1e9"}]}, "cannot parse amount"),
    ({"resources": [{"slot": "cpu", "amount": "NaN"}]}, "cannot parse amount"),
    ({"resources": [{"slot": "cpu", "amount": "0"}]}, "positive 'cpu' and 'mem'"),
    ({"resources": [{"slot": "cpu", "amount": "0.001"}]}, "at least 0.01 cores"),  # accepted; failed at the start
    ({"resources": [{"slot": "cpu", "amount": "1"}, {"slot": "cpu", "amount": "2"}]}, "given twice"),
    ({"clusterSize": 0}, "clusterSize"),
    ({"sessionType": "forever"}, "unknown sessionType"),
    ({"name": "x" * 65}, "session name"),
    ({"image": "  "}, "image"),
    ({"sessionType": "batch"}, "a batch session needs a startup command"),  # accepted; RUNNING for ever
    ({"sessionType": "batch", "startupCommand": " "}, "a batch session needs a startup command"),
])
async def test_bad_create_input_is_refused_and_records_nothing(client_for, keys: Keys, pg_dsn: str, data, fragment) -> None:
    before = count_events(pg_dsn)
    with pytest.raises(BerthAPIError) as refused:
        await client_for(keys.alice).execute(CREATE, {"input": data})
    assert refused.value.code == "BAD_INPUT"
    assert fragment in refused.value.message
    assert count_events(pg_dsn) == before


async def test_terminate_unknown_session_is_not_found(client_for, keys: Keys, pg_dsn: str) -> None:
    before = count_events(pg_dsn)
    with pytest.raises(BerthAPIError) as refused:
        await client_for(keys.alice).execute(TERMINATE, {"id": "0" * 32})
    assert refused.value.code == "NOT_FOUND"
    with pytest.raises(BerthAPIError) as invalid:
        await client_for(keys.alice).execute(TERMINATE, {"id": "no/such id"})
    assert invalid.value.code == "BAD_INPUT"
    assert count_events(pg_dsn) == before


async def test_user_cannot_terminate_another_users_session(client_for, keys: Keys, pg_dsn: str, sessions: Sessions) -> None:
    session_id = (await client_for(keys.alice).execute(CREATE, {"input": {}}))["createSession"]["sessionId"]
    before = count_events(pg_dsn)
    with pytest.raises(BerthAPIError) as refused:
        await client_for(keys.bob).execute(TERMINATE, {"id": session_id})
    assert refused.value.code == "NOT_FOUND"
    assert refused.value.message == f"session {session_id} not found"
    assert count_events(pg_dsn) == before
    assert sessions.get(session_id).status is SessionStatus.PENDING


async def test_owner_terminates_and_a_second_terminate_conflicts(client_for, keys: Keys, pg_dsn: str, sessions: Sessions) -> None:
    alice = client_for(keys.alice)
    created = (await alice.execute(CREATE, {"input": {}}))["createSession"]
    result = (await alice.execute(TERMINATE, {"id": created["sessionId"]}))["terminateSession"]
    assert result["sessionId"] == created["sessionId"] and result["position"] > created["position"]
    assert sessions.get(created["sessionId"]).status is SessionStatus.CANCELLED
    before = count_events(pg_dsn)
    with pytest.raises(BerthAPIError) as refused:
        await alice.execute(TERMINATE, {"id": created["sessionId"]})
    assert refused.value.code == "CONFLICT"
    assert count_events(pg_dsn) == before


async def test_admin_may_terminate_any_session(client_for, keys: Keys, sessions: Sessions) -> None:
    session_id = (await client_for(keys.alice).execute(CREATE, {"input": {}}))["createSession"]["sessionId"]
    await client_for(keys.admin).execute(TERMINATE, {"id": session_id})
    state = sessions.get(session_id)
    assert state.status is SessionStatus.CANCELLED
    assert sessions.load(session_id)[-1].metadata.actor == keys.admin[0]
