"""The soak scenario, through the public API only (signed GraphQL with ``BerthClient``).

Shared by ``ops/bench/soak.py`` (full size, prints the table, checks the 1.5x ratio) and
``tests/e2e/test_soak.py`` (CI size, asserts convergence and a clean doctor only).

One round: C concurrent clients send S ``createSession`` mutations; the round waits until every
accepted session is RUNNING (polling ``sessions`` with ``afterPosition``, with a deadline), then
the clients send ``terminateSession`` for all of them, and the next round starts at once, while
this one is still terminating. After the last round it waits until no session is left in a live
status, reads every session's ``statusHistory`` for the figures, and runs the ``doctor`` query.

Every wait has a deadline (``timeout`` seconds per phase): when one passes, the soak stops starting
rounds, reports what did not converge (counts by status, per round) and returns; it never hangs.
Figures use the event timestamps in ``statusHistory`` (same machine) for RUNNING / TERMINATED and
the local clock for when the first mutation of a phase was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ops.bench.session_listing import list_sessions
from ops.bench.soak_report import RoundResult, SoakResult, ended_by_agent_loss, settled
from ops.bench.soak_report import counts as _counts
from services.cli import queries as q
from services.sdk.client import BerthAPIError, BerthClient

__all__ = ["CONFLICT_MARKS", "Endpoint", "run_soak"]

CONFLICT_MARKS = ("scheduling pass conflicted", "could not catch up after a conflict")
"""The scheduler's log lines for a pass refused because of a concurrent change (one per such pass:
the first when it caught up and planned again, the second when catching up failed)."""

PRE_RUNNING = ["PENDING", "SCHEDULED", "PREPARING", "CREATING"]
LIVE = [*PRE_RUNNING, "RUNNING", "TERMINATING"]
ENDED = ("TERMINATED", "CANCELLED", "ERROR")
SESSION_END = "query($id: String!) { session(id: $id) { status statusReason } }"

DOCTOR = "query { doctor { clean position checks { name subjects drifts } drifts { kind subject expected actual } } }"

TRANSIENT = (BerthAPIError, httpx.HTTPError)


@dataclass(frozen=True)
class Endpoint:
    """Where the gateway is and the keypair the clients sign with (``instance.json`` of ``berth up``)."""

    url: str
    access_key: str
    secret_key: str

    def client(self) -> BerthClient:
        return BerthClient(self.url, self.access_key, self.secret_key)


class _Progress:
    """Prints a progress line at most every ``every`` seconds (and always when forced)."""

    def __init__(self, say: Callable[[str], None], started: float, every: float) -> None:
        self.say, self.started, self.every, self.last = say, started, every, 0.0

    def __call__(self, line: str, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= self.every:
            self.last = now
            self.say(f"[{now - self.started:7.1f}s] {line}")


def _epoch(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _error_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:160]}"


def _log_size(log: Path | None) -> int | None:
    if log is None:
        return None
    try:
        return log.stat().st_size
    except FileNotFoundError:
        return 0


def count_conflicts(log: Path, start: int, end: int | None) -> int:
    """Counts the scheduler's conflicted passes between two byte offsets of ``berth up``'s log."""
    with open(log, "rb") as f:
        f.seek(start)
        chunk = f.read() if end is None else f.read(max(end - start, 0))
    return sum(chunk.count(mark.encode()) for mark in CONFLICT_MARKS)


async def _ended_by_agent_loss(client: BerthClient, exc: BaseException, session_id: str) -> bool:
    """Was ``exc`` a terminateSession refused because the session had already ended, its agent lost?"""
    if not isinstance(exc, BerthAPIError) or exc.code != "CONFLICT":
        return False
    try:
        row = (await client.execute(SESSION_END, {"id": session_id}))["session"]
    except TRANSIENT:
        return False
    return bool(row) and ended_by_agent_loss(row)


async def _each(clients: list[BerthClient], items: list[Any], call: Callable[[BerthClient, Any], Awaitable[None]]) -> None:
    """Runs ``call`` for every item, one request at a time per client, all clients at once."""
    shared: Iterator[Any] = iter(items)

    async def worker(client: BerthClient) -> None:
        for item in shared:  # next() is synchronous: each item goes to exactly one worker
            await call(client, item)

    await asyncio.gather(*(worker(c) for c in clients))


class _Soak:
    def __init__(self, endpoint: Endpoint, *, rounds: int, sessions: int, clients: int, timeout: float,
                 log: Path | None, say: Callable[[str], None], alive: Callable[[], bool] | None,
                 poll: float | None) -> None:
        self.endpoint, self.rounds, self.sessions, self.n_clients = endpoint, rounds, sessions, clients
        self.timeout, self.log, self.alive = timeout, log, alive
        self.poll = poll if poll is not None else min(max(0.2, sessions / 1000), 1.0)
        self.started = time.monotonic()
        self.progress = _Progress(say, self.started, every=3.0)
        self.result = SoakResult(rounds=[])
        self.position = 0

    def _check_alive(self) -> None:
        if self.alive is not None and not self.alive():
            raise _Abort("the Berth under test exited")

    # --- phases ------------------------------------------------------------------------------

    async def _create(self, clients: list[BerthClient], rnd: RoundResult) -> None:
        async def create(client: BerthClient, i: int) -> None:
            now = time.time()
            if rnd.first_create is None:
                rnd.first_create = now
            try:  # a lost answer is retried with the request's idempotency key: one session however often sent
                created = await client.create_session({"name": f"soak-r{rnd.index}-{i}"})
            except TRANSIENT as exc:
                rnd.create_errors[_error_text(exc)] += 1
                return
            rnd.ids.append(created["sessionId"])
            rnd.last_create_ack = time.time()
            self.position = max(self.position, int(created["position"] or 0))
            self.progress(f"round {rnd.index}: {len(rnd.ids)}/{rnd.requested} createSession accepted")

        try:
            async with asyncio.timeout(self.timeout):
                await _each(clients, list(range(rnd.requested)), create)
        except TimeoutError:
            raise _Abort(f"round {rnd.index}: only {len(rnd.ids)} of {rnd.requested} createSession answered "
                         f"within {self.timeout:g} s") from None
        self.progress(f"round {rnd.index}: {len(rnd.ids)}/{rnd.requested} accepted "
                      f"({rnd.create_rate or 0:.1f}/s), {sum(rnd.create_errors.values())} refused", force=True)
        if rnd.create_errors:
            raise _Abort(f"round {rnd.index}: {sum(rnd.create_errors.values())} createSession failed: "
                         f"{_counts(rnd.create_errors)}")

    async def _wait_running(self, observer: BerthClient, rnd: RoundResult) -> None:
        ids = set(rnd.ids)
        deadline = time.monotonic() + self.timeout
        waiting: Counter[str] | None = None
        last_error = ""
        while True:
            self._check_alive()
            try:
                rows = await list_sessions(observer, PRE_RUNNING, self.position)
                waiting = Counter(r["status"] for r in rows if r["id"] in ids)
                if not waiting:
                    rnd.all_running_seen = True
                    self.progress(f"round {rnd.index}: all {len(ids)} RUNNING", force=True)
                    return
                self.progress(f"round {rnd.index}: {len(ids) - sum(waiting.values())}/{len(ids)} RUNNING or past it; "
                              f"waiting: {_counts(waiting)}")
            except TRANSIENT as exc:
                last_error = _error_text(exc)
                self.progress(f"round {rnd.index}: sessions query failed: {last_error}")
            if time.monotonic() >= deadline:
                state = _counts(waiting) if waiting is not None else f"unknown ({last_error})"
                raise _Abort(f"round {rnd.index}: not every session RUNNING within {self.timeout:g} s; "
                             f"not yet RUNNING: {state}")
            await asyncio.sleep(self.poll)

    async def _terminate(self, clients: list[BerthClient], rnd: RoundResult) -> None:
        async def terminate(client: BerthClient, session_id: str) -> None:
            if rnd.first_terminate is None:
                rnd.first_terminate = time.time()
            try:
                data = await client.execute_while_unavailable(q.TERMINATE_SESSION, {"id": session_id})
            except TRANSIENT as exc:
                if not await _ended_by_agent_loss(client, exc, session_id):
                    rnd.terminate_errors[_error_text(exc)] += 1
                return
            rnd.terminated_requests += 1
            self.position = max(self.position, int(data["terminateSession"]["position"] or 0))
            self.progress(f"round {rnd.index}: {rnd.terminated_requests}/{len(rnd.ids)} terminateSession accepted")

        try:
            async with asyncio.timeout(self.timeout):
                await _each(clients, list(rnd.ids), terminate)
        except TimeoutError:
            raise _Abort(f"round {rnd.index}: only {rnd.terminated_requests} of {len(rnd.ids)} terminateSession "
                         f"answered within {self.timeout:g} s") from None
        self.progress(f"round {rnd.index}: {rnd.terminated_requests}/{len(rnd.ids)} terminateSession accepted",
                      force=True)
        if rnd.terminate_errors:
            raise _Abort(f"round {rnd.index}: {sum(rnd.terminate_errors.values())} terminateSession failed: "
                         f"{_counts(rnd.terminate_errors)}")

    async def _wait_converged(self, observer: BerthClient) -> bool:
        deadline = time.monotonic() + self.timeout
        live: Counter[str] | None = None
        last_error = ""
        while True:
            try:
                rows = await list_sessions(observer, LIVE, self.position or None)
                live = Counter(r["status"] for r in rows)
                if not live:
                    self.progress("every session TERMINATED or CANCELLED", force=True)
                    return True
                self.progress(f"waiting for every session to end: {_counts(live)}")
            except TRANSIENT as exc:
                last_error = _error_text(exc)
                self.progress(f"sessions query failed: {last_error}")
            if time.monotonic() >= deadline or (self.alive is not None and not self.alive()):
                state = _counts(live) if live is not None else f"unknown ({last_error})"
                self.result.problems.append(f"sessions still live after {self.timeout:g} s: {state}")
                return False
            await asyncio.sleep(self.poll)

    async def _collect(self, observer: BerthClient) -> None:
        """Reads every session once more and fills in each round's figures and final statuses."""
        try:
            async with asyncio.timeout(min(self.timeout, 120)):
                rows = await list_sessions(observer, None)
        except (*TRANSIENT, TimeoutError) as exc:
            self.result.problems.append(f"could not read the sessions for the figures: {_error_text(exc)}")
            return
        by_id = {row["id"]: row for row in rows}
        for rnd in self.result.rounds:
            running, ended = [], []
            for session_id in rnd.ids:
                row = by_id.get(session_id)
                if row is None:
                    rnd.statuses["MISSING"] += 1
                    continue
                rnd.statuses[row["status"]] += 1
                history = row["statusHistory"] or {}
                if "RUNNING" in history:
                    running.append(_epoch(history["RUNNING"]))
                rnd.agent_lost += ended_by_agent_loss(row)
                rnd.settled += settled(row)
                if row["status"] in ENDED and row["status"] in history:
                    ended.append(_epoch(history[row["status"]]))
            rnd.reached_running = len(running)
            rnd.last_running = max(running) if running else None
            rnd.last_ended = max(ended) if len(ended) == len(rnd.ids) and ended else None
            if not rnd.converged:
                never = len(rnd.ids) - len(running)
                detail = f"; {never} never RUNNING" if never and rnd.all_running_seen else ""
                detail += f"; {rnd.agent_lost} ended because their agent was lost" if rnd.agent_lost else ""
                self.result.problems.append(f"round {rnd.index} did not converge: {len(rnd.ids)}/{rnd.requested} "
                                            f"accepted; end state: {_counts(rnd.statuses)}{detail}")

    async def _doctor(self, observer: BerthClient) -> None:
        deadline = time.monotonic() + min(self.timeout, 60)
        while True:
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 1)):
                    self.result.doctor = (await observer.execute(DOCTOR))["doctor"]
                break
            except (*TRANSIENT, TimeoutError) as exc:
                if time.monotonic() >= deadline or (self.alive is not None and not self.alive()):
                    self.result.problems.append(f"doctor query failed: {_error_text(exc)}")
                    return
                await asyncio.sleep(1)
        doctor = self.result.doctor
        if not doctor["clean"]:
            drifts = "; ".join(f"{d['kind']} {d['subject']}: expected {d['expected']}, actual {d['actual']}"
                               for d in doctor["drifts"][:10])
            self.result.problems.append(f"doctor found {len(doctor['drifts'])} drift(s): {drifts}")

    # --- the run -----------------------------------------------------------------------------

    async def run(self) -> SoakResult:
        clients = [self.endpoint.client() for _ in range(self.n_clients)]
        observer = self.endpoint.client()
        try:
            try:
                for index in range(1, self.rounds + 1):
                    rnd = RoundResult(index=index, requested=self.sessions, log_start=_log_size(self.log))
                    if self.result.rounds:
                        self.result.rounds[-1].log_end = rnd.log_start
                    self.result.rounds.append(rnd)
                    overlap = "; the previous round is still terminating" if index > 1 else ""
                    self.progress(f"round {index}: {self.n_clients} clients create {self.sessions} sessions{overlap}",
                                  force=True)
                    self._check_alive()
                    await self._create(clients, rnd)
                    await self._wait_running(observer, rnd)
                    await self._terminate(clients, rnd)
            except _Abort as exc:
                self.result.problems.append(str(exc))
                self.progress(f"STOPPING: {exc}", force=True)
                # Best effort: end what the stopped round holds, so the convergence check below means something.
                last = self.result.rounds[-1] if self.result.rounds else None
                if last and last.ids and last.first_terminate is None and (self.alive is None or self.alive()):
                    try:
                        await self._terminate(clients, last)
                    except _Abort as again:
                        self.result.problems.append(str(again))
            await self._wait_converged(observer)
            await self._collect(observer)
            self._count_conflicts()
            await self._doctor(observer)
        finally:
            for client in (*clients, observer):
                await client.aclose()
        self.result.elapsed = time.monotonic() - self.started
        return self.result

    def _count_conflicts(self) -> None:
        if self.log is None or not self.result.rounds:
            return
        self.result.rounds[-1].log_end = None
        with contextlib.suppress(OSError):
            for rnd in self.result.rounds:
                rnd.conflicts = count_conflicts(self.log, rnd.log_start or 0, rnd.log_end)


class _Abort(Exception):
    """A phase missed its deadline or failed: no further rounds start."""


async def run_soak(
    endpoint: Endpoint, *, rounds: int = 3, sessions: int = 400, clients: int = 16, timeout: float = 300.0,
    log: Path | None = None, say: Callable[[str], None] | None = None, alive: Callable[[], bool] | None = None,
    poll: float | None = None,
) -> SoakResult:
    """Runs the soak against a running Berth; never raises for what Berth does (see ``SoakResult.problems``).

    ``timeout`` bounds each phase (the creations, the wait for RUNNING, the terminations of one round;
    the final wait for convergence). ``log`` is ``berth up``'s output, to count scheduler conflicts per
    round (the bytes written from a round's first create to the next round's). ``alive`` says whether
    the Berth under test still runs (checked while waiting). ``say`` receives progress lines."""
    if rounds < 1 or sessions < 1 or clients < 1 or timeout <= 0:
        raise ValueError("rounds, sessions and clients must be at least 1, timeout positive")
    soak = _Soak(endpoint, rounds=rounds, sessions=sessions, clients=clients, timeout=timeout, log=log,
                 say=say or (lambda line: print(line, file=sys.stderr, flush=True)), alive=alive, poll=poll)
    return await soak.run()
