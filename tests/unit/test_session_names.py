"""Session names: unique per owner among live sessions, never of the form of an id (the pure
decision, and the use case on the in-memory store)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Iterator

import pytest

from contracts import commands as c
from contracts.envelope import Metadata
from contracts.session import KernelSpec, SessionSpec
from contracts.session_names import SessionNameClaimed, name_claim_id
from contracts.status import SessionStatus, SessionType
from contracts.subjects import check_token
from domain.emitting import Context
from domain.errors import AlreadyExistsError, InvalidRequestError
from domain.session import SessionState
from domain.session_names import claim
from services.application.context import make_context
from services.application.sessions import Sessions

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def ctx() -> Context:
    return Context(now=NOW, metadata=Metadata(actor="AK1", correlation_id="c"), new_id=lambda: uuid.UUID(int=7))


def holder(status: SessionStatus, session_id: str = "s-old") -> SessionState:
    return SessionState(id=session_id, version=1, owner="AK1", status=status, kernels=(),
                        spec=SessionSpec(name="job", image="py", session_type=SessionType.INTERACTIVE, kernels=[]))


def claimed(session_id: str = "s-old", version: int = 1) -> SessionNameClaimed:
    return SessionNameClaimed(event_id=uuid.UUID(int=1), originator_id=name_claim_id("AK1", "job"),
                              originator_version=version, timestamp=NOW,
                              metadata=Metadata(actor="AK1", correlation_id="c"), owner="AK1", name="job",
                              session_id=session_id)


def test_a_claim_id_is_a_subject_token_per_owner_and_name() -> None:
    assert check_token(name_claim_id("AK1", "a.b c/[x]\n" * 6))
    assert len({name_claim_id("AK1", "job"), name_claim_id("AK2", "job"), name_claim_id("AK1", "jobs")}) == 3


def test_a_new_name_is_claimed_at_version_one() -> None:
    (event,) = claim(None, None, owner="AK1", name="job", session_id="s-new", ctx=ctx())
    assert (event.originator_id, event.originator_version) == (name_claim_id("AK1", "job"), 1)
    assert (event.owner, event.name, event.session_id) == ("AK1", "job", "s-new")


@pytest.mark.parametrize("status", [SessionStatus.PENDING, SessionStatus.RUNNING, SessionStatus.TERMINATING])
def test_a_name_held_by_a_live_session_is_refused_naming_it(status: SessionStatus) -> None:
    with pytest.raises(AlreadyExistsError) as refused:
        claim(claimed(), holder(status), owner="AK1", name="job", session_id="s-new", ctx=ctx())
    assert "'job'" in str(refused.value) and "s-old" in str(refused.value) and status.value in str(refused.value)


@pytest.mark.parametrize("status", [SessionStatus.TERMINATED, SessionStatus.CANCELLED, SessionStatus.ERROR])
def test_a_name_whose_holder_ended_is_claimed_again(status: SessionStatus) -> None:
    (event,) = claim(claimed(version=3), holder(status), owner="AK1", name="job", session_id="s-new", ctx=ctx())
    assert (event.originator_version, event.session_id) == (4, "s-new")


@pytest.mark.parametrize("name", ["0123456789abcdef0123456789abcdef", "f" * 32])
def test_a_name_of_the_form_of_an_id_is_refused(name: str) -> None:
    with pytest.raises(InvalidRequestError, match="form of a session id"):
        claim(None, None, owner="AK1", name=name, session_id="s-new", ctx=ctx())


@pytest.mark.parametrize("name", ["0123456789ABCDEF0123456789ABCDEF", "a" * 31, "a" * 33, "cafe", "job-1"])
def test_names_that_are_not_an_id_are_fine(name: str) -> None:
    assert claim(None, None, owner="AK1", name=name, session_id="s-new", ctx=ctx())


@pytest.fixture
def sessions() -> Iterator[Sessions]:
    app = Sessions(None)
    yield app
    app.close()


def request(name: str, owner: str = "AK1") -> c.RequestSession:
    return c.RequestSession(owner=owner, spec=SessionSpec(name=name, image="py", kernels=[
        KernelSpec(kernel_id=f"k-{uuid.uuid4().hex}", slots={"cpu": Decimal(1), "mem": Decimal(1024)})]))


def test_the_use_case_claims_in_the_same_save_and_frees_a_name_when_its_session_ends(sessions: Sessions) -> None:
    ctx = make_context("AK1")
    sessions.request("s1", request("job"), ctx, unique_name=True)
    assert [e.session_id for e in sessions.load(name_claim_id("AK1", "job"))] == ["s1"]
    with pytest.raises(AlreadyExistsError, match="s1"):
        sessions.request("s2", request("job"), ctx, unique_name=True)
    assert sessions.get("s2") is None, "a refused request records nothing"
    sessions.request("s3", request("job", owner="AK2"), make_context("AK2"), unique_name=True)  # another owner's
    sessions.terminate("s1", ctx)  # a pending session is cancelled
    sessions.request("s4", request("job"), ctx, unique_name=True)
    assert [e.session_id for e in sessions.load(name_claim_id("AK1", "job"))] == ["s1", "s4"]


def test_without_unique_name_nothing_is_claimed(sessions: Sessions) -> None:
    ctx = make_context("AK1")
    assert sessions.request("s1", request("job"), ctx) == 1
    assert sessions.request("s2", request("job"), ctx) == 2
    assert sessions.load(name_claim_id("AK1", "job")) == []
