"""Sessions addressed as users do: by id, unique id prefix (4+ characters) or name, resolved once in
the gateway within what the caller may see; an ambiguous reference is an error listing the
candidates; names are unique per owner among live sessions, enforced where the session is recorded."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import uuid
from decimal import Decimal
from typing import Any, Iterator

import psycopg
import pytest

from contracts import commands as c
from contracts.session import KernelSpec, SessionSpec
from contracts.session_names import name_claim_id
from domain.errors import AlreadyExistsError
from projections.session_refs import match_query
from services.sdk.client import BerthAPIError, BerthClient
from services.application.context import make_context
from services.application.sessions import Sessions
from tests.support.gateway import (  # noqa: F401 - fixtures
    CREATE, TERMINATE, Keys, client_for, count_events, gateway, keys, project_session, read_models,
)
from tests.support.tenancy import Tenants, catch_up, refused

SESSION = "query($id: String!) { session(id: $id) { id name status owner } }"
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


@pytest.fixture
def sessions(pg_dsn: str) -> Iterator[Sessions]:
    app = Sessions(pg_dsn)
    yield app
    app.close()


async def create(client: BerthClient, name: str | None = None, **extra: Any) -> str:
    data = {"name": name, **extra} if name else extra
    return (await client.execute(CREATE, {"input": data}))["createSession"]["sessionId"]


async def found(client: BerthClient, ref: str) -> str | None:
    session = (await client.execute(SESSION, {"id": ref}))["session"]
    return session["id"] if session else None


def shortest_unique_prefix(session_id: str, others: list[str]) -> str:
    for length in range(4, 33):
        if not any(other != session_id and other.startswith(session_id[:length]) for other in others):
            return session_id[:length]
    raise AssertionError("unreachable")


async def test_a_session_is_found_by_id_unique_prefix_and_name(client_for, keys: Keys, pg_dsn: str) -> None:
    alice = client_for(keys.alice)
    train, other = await create(alice, "train"), await create(alice, "eval.v2")
    catch_up(pg_dsn)
    prefix = shortest_unique_prefix(train, [train, other])
    for ref in (train, prefix, train[:20], "train"):
        assert await found(alice, ref) == train, ref
    assert await found(alice, "eval.v2") == other
    assert await found(alice, train[:3]) is None, "a prefix needs 4 characters"
    assert await found(alice, "trai") is None, "names match exactly"
    assert await found(alice, "Train") is None

    terminated = (await alice.execute(TERMINATE, {"id": "eval.v2"}))["terminateSession"]
    assert terminated["sessionId"] == other, "the result carries the id"
    terminated = (await alice.execute(TERMINATE, {"id": prefix}))["terminateSession"]
    assert terminated["sessionId"] == train
    catch_up(pg_dsn)
    assert (await alice.execute(SESSION, {"id": "train"}))["session"]["status"] == "CANCELLED", \
        "an ended session is still found by its name when no live one has it"


async def test_an_ambiguous_prefix_is_an_error_listing_the_candidates(client_for, keys: Keys, pg_dsn: str) -> None:
    first, second = "abcd00000000000000000000000000a1", "abcd00000000000000000000000000b2"
    project_session(pg_dsn, first, keys.alice[0], position=1, created_at=T0, name="one")
    project_session(pg_dsn, second, keys.alice[0], position=2, created_at=T0 + dt.timedelta(seconds=1),
                    name="two", status="TERMINATED")
    alice = client_for(keys.alice)
    before = count_events(pg_dsn)
    for ref in ("abcd", "abcd0000000000"):
        error = await refused(alice, SESSION, {"id": ref})
        assert error.code == "AMBIGUOUS", error.message
        assert f"session '{ref}' is ambiguous: it matches 2 sessions" in error.message
        lines = error.message.splitlines()[1:]
        assert lines == [f"  {second}  two  TERMINATED", f"  {first}  one  PENDING"], "newest first"
    error = await refused(alice, TERMINATE, {"id": "abcd"})
    assert error.code == "AMBIGUOUS" and first in error.message
    assert count_events(pg_dsn) == before, "an ambiguous reference changes nothing"
    assert await found(alice, "abcd00000000000000000000000000a") == first
    assert await found(alice, "abcd00000000000000000000000000b") == second
    assert await found(client_for(keys.bob), "abcd") is None, "bob sees neither"


async def test_a_name_that_is_also_a_prefix_of_another_id_is_ambiguous(client_for, keys: Keys, pg_dsn: str) -> None:
    alice = client_for(keys.alice)
    first = await create(alice, "first")
    named = await create(alice, first[:6])
    catch_up(pg_dsn)
    error = await refused(alice, SESSION, {"id": first[:6]})
    assert error.code == "AMBIGUOUS" and first in error.message and named in error.message
    assert await found(alice, first) == first and await found(alice, named) == named, "a full id always wins"


async def test_a_live_name_is_unique_per_owner_and_free_again_once_its_session_ended(
    client_for, keys: Keys, pg_dsn: str, sessions: Sessions,
) -> None:
    alice, bob = client_for(keys.alice), client_for(keys.bob)
    first = await create(alice, "train")
    before = count_events(pg_dsn)
    error = await refused(alice, CREATE, {"input": {"name": "train", "image": "berth/torch:2"}})
    assert (error.code, error.message) == ("CONFLICT", f"session name 'train' is already used by your session "
                                           f"{first} (PENDING); choose another name, or terminate that session first")
    assert count_events(pg_dsn) == before, "a refused create records nothing"
    theirs = await create(bob, "train")  # names are unique per owner
    catch_up(pg_dsn)
    await alice.execute(TERMINATE, {"id": "train"})
    second = await create(alice, "train")
    assert [e.session_id for e in sessions.load(name_claim_id(keys.alice[0], "train"))] == [first, second]
    catch_up(pg_dsn)
    assert await found(alice, "train") == second, "the live session, not the ended one"
    assert await found(bob, "train") == theirs
    await alice.execute(TERMINATE, {"id": "train"})
    catch_up(pg_dsn)
    error = await refused(alice, SESSION, {"id": "train"})
    assert error.code == "AMBIGUOUS" and first in error.message and second in error.message and "CANCELLED" in error.message


async def test_a_command_finds_a_name_given_a_moment_ago(client_for, keys: Keys, pg_dsn: str) -> None:
    """Read-your-writes: a command naming a session the read models do not show yet waits for them."""
    alice = client_for(keys.alice)
    session_id = await create(alice, "fresh")

    def project_later() -> None:
        threading.Event().wait(0.3)
        catch_up(pg_dsn)

    result, _ = await asyncio.gather(alice.execute(TERMINATE, {"id": "fresh"}), asyncio.to_thread(project_later))
    assert result["terminateSession"]["sessionId"] == session_id


async def test_concurrent_creates_of_one_name_record_exactly_one(client_for, keys: Keys, pg_dsn: str) -> None:
    alice = client_for(keys.alice)
    outcomes = await asyncio.gather(*(create(alice, "race") for _ in range(6)), return_exceptions=True)
    created = [o for o in outcomes if isinstance(o, str)]
    assert len(created) == 1, outcomes
    assert all(isinstance(o, BerthAPIError) and o.code == "CONFLICT" and created[0] in o.message
               for o in outcomes if not isinstance(o, str)), outcomes
    catch_up(pg_dsn)
    assert await found(alice, "race") == created[0]


class _Racing(Sessions):
    """Waits, on its first claim only, until the other racer has read the claim too."""

    barrier: threading.Barrier

    def _claim_name(self, *args: Any, **kwargs: Any) -> list[Any]:
        events = super()._claim_name(*args, **kwargs)
        if not getattr(self, "raced", False):
            self.raced = True
            self.barrier.wait(timeout=10)
        return events


def test_two_requests_that_read_a_free_name_at_once_conflict_and_one_is_refused(pg_dsn: str) -> None:
    """Both read the name as free; both try to save claim version 1 in one transaction with their
    session; the store accepts one, the other reloads, sees the live holder and is refused."""
    barrier = threading.Barrier(2)
    apps = [_Racing(pg_dsn), _Racing(pg_dsn)]
    outcomes: dict[str, object] = {}

    def request(app: Sessions, session_id: str) -> None:
        app.barrier = barrier  # type: ignore[attr-defined]
        command = c.RequestSession(owner="AK1", spec=SessionSpec(name="job", image="py", kernels=[
            KernelSpec(kernel_id=f"{session_id}-k0", slots={"cpu": Decimal(1), "mem": Decimal(1024**3)})]))
        try:
            outcomes[session_id] = app.request(session_id, command, make_context("AK1"), unique_name=True)
        except AlreadyExistsError as exc:
            outcomes[session_id] = exc

    threads = [threading.Thread(target=request, args=(app, f"s{i}")) for i, app in enumerate(apps)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    try:
        refusals = [o for o in outcomes.values() if isinstance(o, AlreadyExistsError)]
        assert len(outcomes) == 2 and len(refusals) == 1, outcomes
        winner = next(sid for sid, o in outcomes.items() if isinstance(o, int))
        loser = next(sid for sid, o in outcomes.items() if isinstance(o, AlreadyExistsError))
        assert winner in str(refusals[0])
        assert apps[0].get(loser) is None, "the refused request recorded nothing"
        assert [e.session_id for e in apps[0].load(name_claim_id("AK1", "job"))] == [winner]
    finally:
        for app in apps:
            app.close()


@pytest.mark.parametrize("ref, code", [("no/such", "BAD_INPUT"), ("x" * 129, "BAD_INPUT"), ("", "BAD_INPUT"),
                                       ("0" * 32, None), ("nothing", None)])
async def test_references_that_name_nothing(client_for, keys: Keys, pg_dsn: str, ref: str, code: str | None) -> None:
    alice = client_for(keys.alice)
    catch_up(pg_dsn)
    if code is None:
        assert await found(alice, ref) is None
        code = "NOT_FOUND"
    else:
        assert (await refused(alice, SESSION, {"id": ref})).code == code
    before = count_events(pg_dsn)
    error = await refused(alice, TERMINATE, {"id": ref})
    assert error.code == code
    if code == "NOT_FOUND":
        assert error.message == f"session {ref} not found"
    assert count_events(pg_dsn) == before


async def test_a_name_of_the_form_of_an_id_is_refused(client_for, keys: Keys, pg_dsn: str) -> None:
    before = count_events(pg_dsn)
    error = await refused(client_for(keys.alice), CREATE, {"input": {"name": uuid.uuid4().hex}})
    assert error.code == "BAD_INPUT" and "form of a session id" in error.message
    assert count_events(pg_dsn) == before


async def test_another_tenants_session_is_not_resolvable(client_for, keys: Keys, pg_dsn: str) -> None:
    tenants = Tenants(client_for(keys.admin), client_for)
    carol, dave = await tenants.lab()
    alice, bob, admin = client_for(keys.alice), client_for(keys.bob), client_for(keys.admin)
    mine = await create(alice, "train")
    bobs = await create(bob, "train")
    daves = await create(dave, "lab-job", project="ml")
    catch_up(pg_dsn)
    before = count_events(pg_dsn)
    for client, refs in ((bob, ["lab-job", daves[:8]]), (dave, ["train", mine[:8], bobs[:8]]),
                         (carol, ["train", mine[:8], mine])):
        for ref in refs:
            assert await found(client, ref) is None, ref
            assert (await refused(client, TERMINATE, {"id": ref})).code == "NOT_FOUND", ref
    assert count_events(pg_dsn) == before
    assert await found(bob, "train") == bobs and await found(alice, "train") == mine
    assert await found(carol, "lab-job") == daves, "an admin resolves within its domain"
    assert await found(admin, "lab-job") == daves and await found(admin, mine[:8]) == mine, "a superadmin: all"
    error = await refused(admin, SESSION, {"id": "train"})  # names are unique per owner only
    assert error.code == "AMBIGUOUS" and mine in error.message and bobs in error.message


async def test_dependencies_take_references_and_are_stored_as_ids(
    client_for, keys: Keys, pg_dsn: str, sessions: Sessions,
) -> None:
    alice = client_for(keys.alice)
    prep = await create(alice, "prep")
    catch_up(pg_dsn)
    job = await create(alice, "job", sessionType="batch", startupCommand="true", dependencies=["prep", prep[:8], prep])
    assert sessions.load(job)[0].spec.dependencies == [prep]
    catch_up(pg_dsn)
    error = await refused(client_for(keys.bob), CREATE, {"input": {"dependencies": ["prep"]}})
    assert (error.code, error.message) == ("BAD_INPUT", "dependency prep: no such session of yours")


def test_lookups_use_the_indexes(read_models: str) -> None:
    """With many sessions of one owner, a name and an id prefix are index lookups, whatever the scope."""
    with psycopg.connect(read_models) as conn:
        conn.execute(
            "INSERT INTO sessions (session_id, name, owner, image, session_type, status, requested_slots, cluster_size,"
            " status_history, created_at, updated_at, version, last_position)"
            " SELECT md5(i::text), 'job-' || i, 'AK' || (i % 3), 'img', 'interactive', 'RUNNING', '{}', 1, '{}',"
            " now(), now(), 1, i FROM generate_series(1, 5000) AS i")
        conn.execute("ANALYZE sessions")
        for scope in ({"owner": "AK1"}, {"domain": "default"}, {}):
            for ref, index in (("job-42", "sessions_name_owner"), ("abcd12", "sessions_id_pattern")):
                query, params = match_query(ref, **scope)
                plan = "\n".join(row[0] for row in conn.execute("EXPLAIN " + query, params))
                assert index in plan, plan
