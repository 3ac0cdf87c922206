"""GraphQL over the dead-letter stream (superadmins only): ``deadLetters`` and ``deadLetter``
(queries), ``replayDeadLetters`` and ``dropDeadLetters`` (mutations). The operations themselves
are ``queue``'s; here are the types, the limits and the checks of the caller and the input."""

from __future__ import annotations

import datetime as dt
import json

import strawberry
from nats.js import JetStreamContext
from strawberry.scalars import JSON

from contracts.subjects import SubjectError
from services.common.bus import DEADLETTER_KEPT_BYTES
from services.gateway.context import Info, caller
from services.gateway.deadletters import queue
from services.gateway.errors import BAD_INPUT, FORBIDDEN, NOT_FOUND, GatewayError

__all__ = ["MAX_BATCH", "MAX_BODY_CHARS", "DeadLetterMutation", "DeadLetterQuery"]

MAX_BATCH = 1000
"""The most entries one query lists or one mutation replays or drops."""
MAX_BODY_CHARS = 16_000
"""The longest body ``deadLetter`` returns (a longer one is cut, ``truncated`` says so)."""


@strawberry.type(description="A message a consumer gave up, kept in the dead-letter stream.")
class DeadLetter:
    seq: int = strawberry.field(description="Its sequence in the dead-letter stream: how it is addressed.")
    consumer: str = strawberry.field(description="The durable consumer that gave it up.")
    subject: str = strawberry.field(description="The subject it was consumed from (where a replay publishes it).")
    reason: str = strawberry.field(description="The error that made the consumer give it up.")
    deliveries: int | None = strawberry.field(description="How many times the consumer got it (null: not recorded).")
    dead_lettered_at: dt.datetime | None
    size: int = strawberry.field(description="Bytes of its body: those of the message kept.")
    original_size: int = strawberry.field(description="Bytes of the message the consumer gave up: more than size "
                                                      "when only its beginning was kept (cut).")
    cut: bool = strawberry.field(description="Only the beginning of the message was kept (a letter keeps at most "
                                             f"{DEADLETTER_KEPT_BYTES} bytes of it, so that no sender fills the "
                                             "stream): it cannot be replayed; its headers give its SHA-256.")


@strawberry.type(description="One dead letter with its headers and body (decoded when it is JSON text).")
class DeadLetterDetail(DeadLetter):
    headers: JSON
    body: str = strawberry.field(description=f"The body as text, at most {MAX_BODY_CHARS} characters.")
    truncated: bool


@strawberry.type(description="Dead letters listed: a page, and how many there are in all.")
class DeadLetterPage:
    total: int
    entries: list[DeadLetter]


@strawberry.type(description="An entry a mutation could not replay or drop, and why.")
class DeadLetterRefusal:
    seq: int
    reason: str


@strawberry.type(description="What a replay or a drop did: the entries done, and those refused.")
class DeadLetterOutcome:
    done: list[int]
    refused: list[DeadLetterRefusal]


def _summary(letter: queue.DeadLetter) -> DeadLetter:
    return DeadLetter(seq=letter.seq, consumer=letter.consumer, subject=letter.subject, reason=letter.reason,
                      deliveries=letter.deliveries, dead_lettered_at=letter.dead_lettered_at, size=len(letter.data),
                      original_size=letter.original_size, cut=letter.cut)


def _detail(letter: queue.DeadLetter) -> DeadLetterDetail:
    text = letter.data.decode("utf-8", errors="replace")
    try:
        text = json.dumps(json.loads(text), indent=2, sort_keys=True)
    except ValueError:
        pass
    return DeadLetterDetail(**vars(_summary(letter)), headers=letter.headers, body=text[:MAX_BODY_CHARS],
                            truncated=len(text) > MAX_BODY_CHARS)


async def _jetstream(info: Info, what: str) -> JetStreamContext:
    """Returns JetStream for a superadmin caller; FORBIDDEN for anyone else."""
    if not caller(info).is_superadmin:
        raise GatewayError(FORBIDDEN, f"only a superadmin may {what} dead letters")
    return await info.context.resources.jetstream()


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_BATCH:
        raise GatewayError(BAD_INPUT, f"limit must be between 1 and {MAX_BATCH}, got {limit}")
    return limit


def _seq(seq: int) -> int:
    if seq < 1:
        raise GatewayError(BAD_INPUT, f"a dead letter's sequence is a positive number, got {seq}")
    return seq


def _consumer(consumer: str | None) -> str | None:
    """Returns ``consumer`` once checked as a subject token; BAD_INPUT otherwise."""
    if consumer is not None:
        try:
            queue.check_consumer(consumer)
        except SubjectError as exc:
            raise GatewayError(BAD_INPUT, str(exc)) from exc
    return consumer


async def _selected(js: JetStreamContext, seq: int | None, consumer: str | None, all_: bool,
                    limit: int) -> tuple[list[queue.DeadLetter], list[DeadLetterRefusal]]:
    """Returns the entries a mutation acts on: entry ``seq``, the first ``limit`` of ``consumer``,
    or the first ``limit`` of all (``all_``): exactly one of the three must be given."""
    if sum((seq is not None, consumer is not None, all_)) != 1:
        raise GatewayError(BAD_INPUT, "give exactly one of seq, consumer or all")
    if seq is not None:
        letter = await queue.entry(js, _seq(seq))
        return ([letter], []) if letter is not None else ([], [DeadLetterRefusal(seq=seq, reason="no such dead letter")])
    return await queue.entries(js, _consumer(consumer), limit=_limit(limit)), []


@strawberry.type
class DeadLetterQuery:
    @strawberry.field(description=f"Lists dead letters, oldest first (superadmins): all, or one consumer's; "
                                  f"after a sequence; at most `limit` (1..{MAX_BATCH}).")
    async def dead_letters(self, info: Info, consumer: str | None = None, after: int = 0,
                           limit: int = 100) -> DeadLetterPage:
        js = await _jetstream(info, "list")
        consumer = _consumer(consumer)
        letters = await queue.entries(js, consumer, after=max(after, 0), limit=_limit(limit))
        return DeadLetterPage(total=await queue.count(js, consumer), entries=[_summary(d) for d in letters])

    @strawberry.field(description="Shows one dead letter with its headers and body (superadmins).")
    async def dead_letter(self, info: Info, seq: int) -> DeadLetterDetail:
        letter = await queue.entry(await _jetstream(info, "show"), _seq(seq))
        if letter is None:
            raise GatewayError(NOT_FOUND, f"no dead letter {seq}")
        return _detail(letter)


@strawberry.type
class DeadLetterMutation:
    @strawberry.mutation(description="Publishes dead letters again on their original subject, then removes them, "
                                     "exactly once in effect (superadmins). Only reports are replayed; an event is "
                                     "refused with the reason, as is a cut letter. Give exactly one of seq, consumer "
                                     "or all.")
    async def replay_dead_letters(self, info: Info, seq: int | None = None, consumer: str | None = None,
                                  all: bool = False, limit: int = 100) -> DeadLetterOutcome:  # noqa: A002 - the API's word
        js = await _jetstream(info, "replay")
        letters, refused = await _selected(js, seq, consumer, all, limit)
        done = []
        for letter in letters:
            try:
                await queue.replay(js, letter)
            except queue.NotReplayableError as exc:
                refused.append(DeadLetterRefusal(seq=letter.seq, reason=str(exc)))
            else:
                done.append(letter.seq)
        return DeadLetterOutcome(done=done, refused=refused)

    @strawberry.mutation(description="Removes dead letters for good (superadmins). Give exactly one of seq, "
                                     "consumer or all.")
    async def drop_dead_letters(self, info: Info, seq: int | None = None, consumer: str | None = None,
                                all: bool = False, limit: int = 100) -> DeadLetterOutcome:  # noqa: A002 - the API's word
        js = await _jetstream(info, "drop")
        letters, refused = await _selected(js, seq, consumer, all, limit)
        done = [letter.seq for letter in letters if await queue.drop(js, letter.seq)]
        refused += [DeadLetterRefusal(seq=letter.seq, reason="already gone") for letter in letters
                    if letter.seq not in done]
        return DeadLetterOutcome(done=done, refused=refused)
