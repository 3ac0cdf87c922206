"""The bulk path of a rebuild (``apply_batch(..., bulk=True)``: large batches, inserts with
binary COPY) gives exactly the tables of the incremental path, on a history that touches every
read model, with values that a text COPY would have to escape."""

from __future__ import annotations

import re
import threading
from decimal import Decimal

import msgspec
import psycopg
import pytest
from psycopg import sql

from contracts import agent as ag
from contracts import session as ss
from contracts import tenancy as tn
from contracts import vfolder as vf
from contracts.envelope import Event
from contracts.quota import QuotaConsumed, QuotaReleased, QuotaScope, quota_id
from contracts.status import Reason, SessionStatus
from contracts.tenancy import KeypairLimits, ResourceGroupOptions, Role
from projections.delivery import Delivery
from projections.position import Position, read_position
from projections.rebuild import (
    PRIMARY_KEYS,
    create_secondary_indexes,
    dump_read_models,
    reset_read_models,
    secondary_index_statements,
    secondary_indexes,
)
from projections.runner import apply_batch
from projections import writer
from projections.writer import Writer
from projections.schema import TABLES, create_schema
from tests.support.projections import Builder, Feeder, build, feed, read_models, slots  # noqa: F401
from tests.support.waiting import wait_for

ODD = 'tab\there "quoted" back\\slash\nnew line, \\N, ünïcødé, \x01'
"""Text that COPY's text format must escape (tabs, newlines, backslashes, its NULL marker)."""


def mixed_history(build: Builder, sessions: int) -> list[Event]:
    """Every kind of event the read models apply, interleaved across aggregates."""
    qid = quota_id(QuotaScope.PROJECT, "ml")
    events: list[Event] = [
        build(tn.DomainCreated, "domain_lab", name="lab", description=ODD, total_resource_slots={"cpu": Decimal(64)}),
        build(tn.ProjectCreated, "project_ml", name="ml", domain="lab"),
        build(tn.UserCreated, "user_alice", name="alice", domain="lab", role=Role.ADMIN, projects=["ml"]),
        build(tn.ResourcePolicyCreated, "policy_small", name="small",
              limits=KeypairLimits(total_resource_slots={"cpu": Decimal(8)}, max_pending_session_count=2)),
        build(tn.KeypairCreated, "AKIAALICE", user="alice", role=Role.ADMIN, domain="lab", resource_policy="small"),
        build(tn.ResourceGroupCreated, "rgroup_gpu", name="gpu", options=ResourceGroupOptions()),
        build.registered("a1", cpu="64", mem=str(64 * 1024**3)),
        build.registered("a2", cpu="64", mem=str(64 * 1024**3)),
    ]
    for i in range(sessions):
        sid, agent = f"s{i}", f"a{1 + i % 2}"
        kernels = [(f"k{i}-{j}", slots("1", "1024", cuda_shares="0.5")) for j in range(1 + i % 3)]
        events.append(build.requested(sid, *kernels, name=f"job {ODD} {i}"))
        if i % 5 == 4:
            events.append(build(ss.SessionPendingReasonChanged, sid, code="no-agent", message=f"none fits: {ODD}"))
            events.append(build.status(sid, SessionStatus.CANCELLED, Reason.USER_REQUESTED))
            continue
        events.append(build(QuotaConsumed, qid, scope=QuotaScope.PROJECT, name="ml",
                            allocations={sid: slots(str(len(kernels)), str(1024 * len(kernels)))}))
        events.append(build.scheduled(sid, **{kid: agent for kid, _ in kernels}))
        for kid, amount in kernels:
            events.append(build(ag.KernelAssigned, agent, kernel_id=kid, session_id=sid, image="py", slots=amount))
            events.append(build(ss.KernelPreparing, sid, kernel_id=kid))
            events.append(build(ss.KernelProgressed, sid, kernel_id=kid, detail=f"pulling: {ODD}"))
            events.append(build(ss.KernelCreating, sid, kernel_id=kid))
            events.append(build(ss.KernelStarted, sid, kernel_id=kid, container_id=f"c-{kid}"))
        events.append(build.status(sid, SessionStatus.RUNNING, Reason.ALL_KERNELS_RUNNING))
        if i % 3 == 0:
            for kid, _ in kernels:
                events.append(build(ss.KernelTerminated, sid, kernel_id=kid, exit_code=i % 2, reason=Reason.USER_REQUESTED))
                events.append(build(ag.KernelReleased, agent, kernel_id=kid, session_id=sid))
            events.append(build(QuotaReleased, qid, scope=QuotaScope.PROJECT, name="ml", session_id=sid,
                                slots=slots(str(len(kernels)), str(1024 * len(kernels)))))
            events.append(build.status(sid, SessionStatus.TERMINATED, Reason.USER_REQUESTED))
    events += vfolder_history(build)
    events += [
        build(tn.KeypairPolicyChanged, "AKIAALICE", resource_policy="default"),
        build(tn.DomainUpdated, "domain_lab", total_resource_slots={"cpu": Decimal(32)}),
        build(ag.AgentLost, "a2", last_seen=1.5),
    ]
    return events


def vfolder_history(build: Builder) -> list[Event]:
    """Folders created, provisioned, shared, invited into, renamed, measured, trashed and restored,
    one purged; a project's storage limit."""
    def created(folder: str, name: str, **fields: object) -> Event:
        return build(vf.VFolderCreated, folder, name=name, volume="local", owner_kind=vf.OwnerKind.USER,
                     owner="alice", domain="lab", quota_scope="user:alice", by="AKIAALICE", **fields)

    rw, ro = vf.VFolderPermission.RW, vf.VFolderPermission.RO
    return [
        created("vf1", f"data {ODD}"),
        build(vf.VFolderProvisioned, "vf1"),
        build(vf.VFolderShared, "vf1", user="bob", permission=rw, by="alice"),
        build(vf.VFolderShared, "vf1", user="carol", permission=ro, by="alice"),
        build(vf.VFolderPermissionChanged, "vf1", user="carol", permission=rw, by="alice"),
        build(vf.VFolderInvited, "vf1", invitation_id="inv1", invitee="dave", permission=ro, by="alice"),
        build(vf.VFolderInvitationAccepted, "vf1", invitation_id="inv1", invitee="dave"),
        build(vf.VFolderInvited, "vf1", invitation_id="inv2", invitee="erin", permission=ro, by="alice"),
        build(vf.VFolderInvitationRejected, "vf1", invitation_id="inv2", invitee="erin"),
        build(vf.VFolderUnshared, "vf1", user="bob", by="alice"),
        build(vf.VFolderRenamed, "vf1", name="data2", previous=f"data {ODD}", by="alice"),
        build(vf.VFolderQuotaSet, "vf1", limit_bytes=10**9, by="alice"),
        build(vf.VFolderUsageMeasured, "vf1", bytes=12345, files=7),
        build(vf.VFolderTrashed, "vf1", by="alice"),
        build(vf.VFolderRestored, "vf1", by="alice"),
        created("vf2", "scratch", cloneable=True),
        build(vf.VFolderProvisionFailed, "vf2", reason=f"disk full: {ODD}"),
        build(vf.VFolderTrashed, "vf2", by="alice"),
        build(vf.VFolderPurgeRequested, "vf2", by="alice"),
        build(vf.VFolderPurged, "vf2"),
        build(tn.ProjectStorageLimitSet, "project_ml", max_quota_scope_size=5 * 10**9),
    ]


def unknown_type(feed: Feeder, build: Builder) -> Delivery:
    """A message of a type this version does not know: it reaches only the event log."""
    envelope = msgspec.json.decode(msgspec.json.encode(build.registered("a9", cpu="1", mem="1")))
    envelope.update(type="agent.from_the_future", note=ODD)
    feed.position += 1
    feed.stream_seq += 1
    return Delivery(feed.stream_seq, "ev.agent.a9.from_the_future", str(feed.position), msgspec.json.encode(envelope))


def replay(conn: psycopg.Connection, deliveries: list[Delivery], size: int, *, bulk: bool) -> None:
    for start in range(0, len(deliveries), size):
        result = apply_batch(conn, deliveries[start:start + size], on_reject=_no_rejects, bulk=bulk)
        assert result.rejected == 0


def _no_rejects(rejected: object) -> None:
    raise AssertionError(f"rejected: {rejected}")


def test_bulk_rebuild_gives_the_incremental_tables(feed: Feeder, build: Builder, caplog: pytest.LogCaptureFixture) -> None:
    events = mixed_history(build, 30)
    deliveries = [feed.delivery(e) for e in events[:40]] + [unknown_type(feed, build)]
    deliveries += [feed.delivery(e) for e in events[40:]]
    replay(feed.conn, deliveries, 7, bulk=False)
    incremental = dump_read_models(feed.conn)
    assert len(incremental["sessions"]) == 30 and len(incremental["event_log"]) == len(deliveries)
    assert all(incremental.values()), "every read model has rows"

    for size in (len(deliveries), 50, 3):  # one batch, then batches that cut histories apart
        reset_read_models(feed.conn, bulk=True)
        caplog.clear()
        replay(feed.conn, deliveries, size, bulk=True)
        create_schema(feed.conn)
        assert dump_read_models(feed.conn) == incremental
        assert read_position(feed.conn) == Position(feed.position, feed.stream_seq)
        # in bulk each time, not by the event-by-event fallback (rows of earlier batches held too)
        assert not [r for r in caplog.records if "event by event" in r.getMessage()], size


def test_the_dumps_cover_every_read_model_table() -> None:
    assert set(PRIMARY_KEYS) == set(TABLES) - {"projection_position"}


def test_a_poison_event_in_a_bulk_batch_is_isolated(feed: Feeder, build: Builder) -> None:
    good = [build.requested(f"s{i}", (f"k{i}", slots("1", "1"))) for i in range(3)]
    orphan = build(ss.KernelStarted, "ghost", kernel_id="kx", container_id="c")
    result = apply_batch(feed.conn, [feed.delivery(e) for e in (good[0], orphan, *good[1:])],
                         on_reject=feed.rejected.append, bulk=True)
    assert (result.applied, result.rejected) == (3, 1)
    assert "no session ghost" in feed.rejected[0].error
    assert feed.rows("SELECT session_id FROM sessions ORDER BY 1") == [("s0",), ("s1",), ("s2",)]
    assert feed.rows("SELECT position FROM event_log ORDER BY 1") == [(1,), (3,), (4,)]


@pytest.mark.parametrize("poison", ["a held kernel of another session", "a session requested twice"])
def test_a_poison_event_among_held_rows_is_rejected_as_the_incremental_path_rejects_it(
    feed: Feeder, build: Builder, poison: str,
) -> None:
    """A rebuild's batch holds its new rows in memory: an event naming a held kernel of another
    session, or a session requested twice, is refused there as the table's statements refuse it."""
    bad = {
        "a held kernel of another session": build(ss.KernelStarted, "s1", kernel_id="k0", container_id="c"),
        "a session requested twice": build.requested("s0", ("k9", slots("2", "2"))),
    }[poison]
    events = [
        build.requested("s0", ("k0", slots("1", "1"))),
        build.requested("s1", ("k1", slots("1", "1"))),
        bad,
        build(ss.KernelStarted, "s0", kernel_id="k0", container_id="c0"),
        build.status("s0", SessionStatus.RUNNING, Reason.ALL_KERNELS_RUNNING),
    ]
    deliveries = [feed.delivery(e) for e in events]
    outcomes = []
    for bulk in (False, True):
        reset_read_models(feed.conn, bulk=bulk)
        feed.rejected.clear()
        result = apply_batch(feed.conn, deliveries, on_reject=feed.rejected.append, bulk=bulk)
        create_schema(feed.conn)
        outcomes.append(((result.applied, result.rejected), [r.delivery.stream_seq for r in feed.rejected],
                         dump_read_models(feed.conn)))
    assert outcomes[0][:2] == ((4, 1), [3])
    assert outcomes[1] == outcomes[0]


def test_a_bulk_batch_changes_the_rows_of_earlier_batches_in_memory(
    feed: Feeder, build: Builder, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sessions, kernels, agents' allocations and quota sums that a bulk batch's events change are
    read first, one statement per table: no statement per change, no pipeline sync per row; a session's
    row in a quota scope goes with the batch's COPY."""
    deliveries = [feed.delivery(e) for e in mixed_history(build, 30)]
    replay(feed.conn, deliveries, 7, bulk=False)
    incremental = dump_read_models(feed.conn)
    reset_read_models(feed.conn)
    half = len(deliveries) // 2  # the second half goes on with the sessions, kernels, agents, quota of the first
    replay(feed.conn, deliveries[:half], half, bulk=True)
    monkeypatch.setattr(writer, "PRELOAD_FROM", 1)  # however few rows the halves share
    statements: list[str] = []
    for method in ("execute", "execute_one", "fetchone"):
        real = getattr(Writer, method)

        def counted(self, query, *args, _real=real, **kwargs):  # type: ignore[no-untyped-def]
            statements.append(" ".join(query.split()[:3]))
            return _real(self, query, *args, **kwargs)

        monkeypatch.setattr(Writer, method, counted)
    replay(feed.conn, deliveries[half:], len(deliveries), bulk=True)
    per_change = ("UPDATE sessions", "UPDATE kernels", "SELECT allocations", "SELECT slots", "INSERT INTO quota_usage_sessions")
    assert statements and not [s for s in statements if s.startswith(per_change)]
    assert dump_read_models(feed.conn) == incremental


def test_a_bulk_reset_leaves_out_only_the_secondary_indexes_until_the_schema_is_created(
    read_models: psycopg.Connection,
) -> None:
    def indexes() -> set[str]:
        return {name for (name,) in read_models.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()").fetchall()}

    everything, secondary = indexes(), secondary_indexes(read_models)
    assert {"sessions_status", "event_log_aggregate", "kernels_session"} <= set(secondary)
    reset_read_models(read_models, bulk=True)
    assert secondary_indexes(read_models) == []
    assert indexes() == everything - set(secondary)  # primary keys and unique indexes stay
    create_schema(read_models)
    assert indexes() == everything and secondary_indexes(read_models) == secondary


def test_a_bulk_reset_s_indexes_come_back_built_over_two_connections_at_once(
    read_models: psycopg.Connection, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``create_secondary_indexes`` (the end of a rebuild) gives the indexes of ``create_schema``, half
    of them built on each connection; ``secondary_index_statements`` names every secondary index."""
    secondary = secondary_indexes(read_models)
    assert sorted(statement.split()[5] for statement in secondary_index_statements()) == secondary
    reset_read_models(read_models, bulk=True)
    built: dict[int, list[str]] = {}
    original = psycopg.Connection.execute

    def execute(conn, query, *args, **kwargs):  # type: ignore[no-untyped-def]
        text = query.as_string(conn) if isinstance(query, sql.Composable) else str(query)
        if index := re.search(r"CREATE INDEX IF NOT EXISTS (\w+)", text):
            built.setdefault(id(conn), []).append(index.group(1))
        return original(conn, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", execute)
    with psycopg.connect(read_models.info.dsn, autocommit=True) as other:
        create_secondary_indexes(read_models, other)
    monkeypatch.undo()
    assert secondary_indexes(read_models) == secondary
    assert sorted(built) == sorted([id(read_models), id(other)])
    assert sorted(name for names in built.values() for name in names) == secondary


def test_indexes_built_while_a_projector_creates_the_schema_wait_for_it_and_do_not_fail(
    read_models: psycopg.Connection,
) -> None:
    """A projector connecting during a rebuild's last step runs ``create_schema``, whose ``CREATE INDEX
    IF NOT EXISTS`` does not see an index another transaction is still creating: without the schema's
    lock, the rebuild's build of the same index failed on the catalog's unique key once the
    projector committed (seen in CI)."""
    secondary = secondary_indexes(read_models)
    reset_read_models(read_models, bulk=True)
    dsn = read_models.info.dsn
    failures: list[BaseException] = []
    with psycopg.connect(dsn, autocommit=True) as projector, psycopg.connect(dsn, autocommit=True) as first, \
            psycopg.connect(dsn, autocommit=True) as second:
        def build() -> None:
            try:
                create_secondary_indexes(first, second)
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)

        def waiting() -> bool:
            return bool(read_models.execute(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND pid = ANY(%s)",
                ([first.info.backend_pid, second.info.backend_pid],)).fetchone()[0])

        with projector.transaction():  # as create_schema: its lock, then the index
            projector.execute("SELECT pg_advisory_xact_lock(hashtext('berth.projections.schema'))")
            projector.execute(secondary_index_statements()[0])
            builder = threading.Thread(target=build)
            builder.start()
            wait_for(waiting, timeout=30, message="the rebuild's index builds never waited")
        builder.join(60)
    assert not builder.is_alive() and failures == []
    assert secondary_indexes(read_models) == secondary
