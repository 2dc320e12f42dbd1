"""One chat turn, shared by every channel: dedupe → lock → history → reply → store → :class:`TurnResult`.

1. Claim the message under its ``message_id`` (the client's, or a generated one): an id already
   answered replays the stored answer unchanged (idempotent retries, what helpdesks expect); an id
   being answered right now gives 409.
2. Take the conversation's lock, first come first served, so two messages of one conversation are
   answered in order and each reply sees the previous one (409 if the lock is not free within
   ``lock_wait_seconds``).
3. Load the stored history and ask the pipeline for a reply given that history and the new text
   (the reply model sees the multi-turn context, not only the last message).
4. Commit: store the customer message, the reply (both scrubbed of personal data with the setting
   ``scrub_history``, ``server/store/scrubbing.py``), the status and the answer for replay in one
   script that applies at most once (``server/store/history.py``). If Redis fails before, nothing
   is stored (503); if the commit's reply is lost, its outcome is read back from Redis first, so a
   503 always means nothing was stored (504 when Redis could not be asked in time).

Whenever a turn fails, its claim, queue place and lock are released (in the background if Redis is
down), so neither the client's retry nor the conversation's next message waits for them to expire.

The result is a typed :class:`TurnResult`; each channel renders it in its own format (``/v1/chat``
JSON with :meth:`TurnResult.to_json`, the Rasa webhook's message list, a helpdesk API call).
:func:`run_turn` is steps 1-3 (:func:`open_turn`, a context manager) around one ``pipeline.respond``
call and step 4 (:meth:`OpenTurn.store`), announced to the pipeline's micro-batching (if any) from its
start, so that a batch about to run waits a few milliseconds for turns still reading Redis
(``assistant/microbatching.py``); the streaming endpoint (``server/streaming.py``) runs the
same steps around a streamed reply. This
module knows no HTTP request formats (the blueprints do) and no reply logic (``assistant.pipeline``).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis

from assistant.data import Turn
from assistant.pipeline import Reply
from server import metrics
from server.errors import ApiError
from server.runtime import Runtime
from server.store.history import (
    ClaimLost,
    DuplicateInFlight,
    StoredAnswer,
    StoredTurn,
    TurnAttempt,
    TurnNotStored,
)
from server.store.scrubbing import history_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplyItem:
    """One message sent to the customer: its text, ``source`` (faq | model | fallback), FAQ entry and
    the FAQ entity the conversation is about (conversational FAQ indexes)."""

    text: str
    source: str
    faq_id: str | None = None
    entity: str | None = None

    def to_json(self) -> dict[str, Any]:
        """``{text, source, faq_id?, entity?}`` as in the ``/v1/chat`` body (optional keys only when set)."""
        item: dict[str, Any] = {"text": self.text, "source": self.source}
        if self.faq_id is not None:
            item["faq_id"] = self.faq_id
        if self.entity is not None:
            item["entity"] = self.entity
        return item


@dataclass(frozen=True)
class TurnResult:
    """The outcome of one customer message, independent of the channel that carried it.

    Attributes:
        conversation_id: the conversation.
        message_id: the client's id of the message, or the one generated for it.
        replies: what is sent to the customer, in order.
        confidence: of the route taken, in [0, 1], rounded to 4 decimals.
        handoff: a person should take over the conversation.
        replayed: this is the stored answer to a repeated ``message_id``, not a new turn.
    """

    conversation_id: str
    message_id: str
    replies: tuple[ReplyItem, ...]
    confidence: float
    handoff: bool
    replayed: bool = False

    @classmethod
    def from_reply(cls, conversation_id: str, message_id: str, reply: Reply) -> TurnResult:
        """The result of a freshly computed pipeline :class:`~assistant.pipeline.Reply`."""
        return cls(
            conversation_id=conversation_id,
            message_id=message_id,
            replies=(ReplyItem(reply.text, reply.source, reply.faq_id, reply.entity),),
            confidence=round(float(reply.confidence), 4),
            handoff=bool(reply.handoff),
        )

    @classmethod
    def from_stored(cls, conversation_id: str, message_id: str, stored: StoredAnswer) -> TurnResult:
        """The replay of an answer stored for ``message_id``."""
        return cls(
            conversation_id=conversation_id,
            message_id=message_id,
            replies=tuple(
                ReplyItem(r["text"], r["source"], r.get("faq_id"), r.get("entity")) for r in stored.replies
            ),
            confidence=stored.confidence,
            handoff=stored.handoff,
            replayed=True,
        )

    def to_json(self) -> dict[str, Any]:
        """The ``/v1/chat`` response body ``{conversation_id, message_id, replies, confidence, handoff}``."""
        return {
            "conversation_id": self.conversation_id,
            "message_id": self.message_id,
            "replies": [r.to_json() for r in self.replies],
            "confidence": self.confidence,
            "handoff": self.handoff,
        }


def run_turn(rt: Runtime, conversation_id: str, text: str, message_id: str | None = None) -> TurnResult:
    """Answer one customer message and store the turn at most once.

    Args:
        rt: the app's runtime (store and pipeline).
        conversation_id: a valid id (see ``server.api.schemas``).
        text: the customer's message, validated and stripped.
        message_id: the client's id of this message; generated (uuid4 hex) when ``None``. Either way
            the turn is claimed under it, so no copy of its write can apply twice.

    Returns:
        the :class:`TurnResult` (``replayed`` when it is the stored answer to a repeated ``message_id``).

    Raises:
        ApiError: 409 for a duplicate in flight, a ``message_id`` reused for another text, an
            unreadable stored answer, a busy conversation, or a turn superseded meanwhile.
        TurnNotStored: Redis failed and nothing of the turn is stored (503).
        TurnOutcomeUnknown: Redis could not tell whether the turn was stored (504).
        redis.RedisError: any other Redis failure, nothing stored (503).
        ModelError: the reply model failed, nothing stored (503).
    """
    batching = getattr(rt.pipeline, "batching", None)  # micro-batching: announced from the turn's start
    with (
        batching.request() if batching is not None else contextlib.nullcontext(),
        open_turn(rt, conversation_id, text, message_id) as turn,
    ):
        if turn.replay is not None:
            return turn.replay
        return turn.store(rt.pipeline.respond(turn.history, text))


class OpenTurn:
    """A turn between its start and its store: the message claimed, the conversation locked, history loaded.

    Made by :func:`open_turn`; the caller computes a reply from :attr:`history` (in one piece, or
    streamed: ``server/streaming.py``) and stores it with :meth:`store`.

    Attributes:
        conversation_id, message_id, text: the message (``message_id`` generated if the client gave none).
        replay: the stored answer when ``message_id`` was answered before (then nothing else is set:
            no lock is taken, nothing is to be stored).
        history: the stored turns the reply sees, oldest first.
        stored: whether :meth:`store` ran to its end (the turn, or another attempt's at the same
            message_id, is stored).
    """

    def __init__(
        self,
        rt: Runtime,
        conversation_id: str,
        message_id: str,
        text: str,
        *,
        attempt: TurnAttempt | None = None,
        history: list[Turn] | None = None,
        replay: TurnResult | None = None,
    ) -> None:
        self.rt = rt
        self.conversation_id = conversation_id
        self.message_id = message_id
        self.text = text
        self.attempt = attempt
        self.history = history or []
        self.replay = replay
        self.stored = False
        self.opened = time.perf_counter()  # the reply's computing time is measured from here (metrics)

    def store(self, reply: Reply) -> TurnResult:
        """Commit the customer message, ``reply``, the status and the answer for replay: one script,
        applied at most once, which also releases the conversation's lock.

        Returns:
            the turn's result; the stored answer of another attempt at the same message_id (replayed)
            when that one was stored first.

        Raises:
            ApiError: 409 ``message_superseded``: the claim was lost meanwhile; nothing stored.
            TurnNotStored: nothing of the turn was stored (503).
            TurnOutcomeUnknown: Redis could not be asked whether it was (504).
            redis.RedisError: Redis refused the write; nothing stored.
        """
        if self.attempt is None:
            raise RuntimeError("a replayed turn has nothing to store")
        metrics.observe_reply(reply, self.rt.pipeline, time.perf_counter() - self.opened)
        result = TurnResult.from_reply(self.conversation_id, self.message_id, reply)
        now = time.time()
        settings = self.rt.settings
        stored_text = history_text(settings, self.text)  # scrubbed when the setting scrub_history is on
        turns = [
            StoredTurn(role="customer", text=stored_text, message_id=self.message_id, at=now),
            StoredTurn(
                role="agent",
                text=history_text(settings, reply.text),
                message_id=self.message_id,
                at=now,
                source=reply.source,
                faq_id=reply.faq_id,
                confidence=result.confidence,
                handoff=result.handoff,
                entity=reply.entity,
            ),
        ]
        answer = StoredAnswer(
            customer_text=stored_text,
            replies=tuple({**r.to_json(), "text": history_text(settings, r.text)} for r in result.replies),
            confidence=result.confidence,
            handoff=result.handoff,
        )
        store = self.rt.store
        try:
            outcome = store.commit(
                self.attempt, turns, status="handoff" if result.handoff else "bot", answer=answer
            )
        except ClaimLost as e:
            raise _superseded(self.attempt) from e
        finally:
            self.stored = True  # committed, resolved or abandoned: nothing is left to release
        if not outcome.ours:  # another attempt at the same message_id was stored first: its answer counts
            return _replay(
                self.conversation_id, self.message_id, history_text(settings, self.text), outcome.answer
            )
        if not outcome.lock_held:
            log.warning(
                "conversation %r: the turn outlived its lock (lock_timeout_seconds %s); another "
                "message of it may have been answered meanwhile",
                self.conversation_id,
                store.lock_timeout,
            )
        return result


@contextmanager
def open_turn(
    rt: Runtime, conversation_id: str, text: str, message_id: str | None = None
) -> Iterator[OpenTurn]:
    """Steps 1-3 of a turn around the caller's reply: claim the message id, lock, load the history.

    When the block raises or leaves without :meth:`OpenTurn.store`, the attempt is abandoned: its
    claim, queue place and lock are released (in the background while Redis is unreachable), so the
    client may retry at once. Arguments as :func:`run_turn`.

    Raises:
        ApiError: 409 as :func:`run_turn` (before the block runs).
        TurnNotStored: Redis unreachable (503).
    """
    store = rt.store
    attempt = store.attempt(conversation_id, message_id or uuid.uuid4().hex, client_id=message_id is not None)
    message_id = attempt.message_id
    try:
        stored = store.claim(attempt)
    except DuplicateInFlight as e:
        raise ApiError(
            409,
            "duplicate_in_flight",
            f"message_id {message_id!r} of conversation {conversation_id!r} is being answered; "
            "retry in a moment to get its answer",
        ) from e
    except ValueError as e:
        log.warning(
            "conversation %r: unreadable stored answer of message %r: %s", conversation_id, message_id, e
        )
        raise ApiError(
            409,
            "message_id_unreadable",
            f"the stored answer of message_id {message_id!r} cannot be read by this server version; "
            "send the message with a new message_id",
        ) from e
    except redis.RedisError as e:
        store.abandon(attempt, redis_unreachable=_unreachable(e))  # the claim may still be applied: fence it
        raise _not_stored(attempt, e) from e
    if stored is not None:
        replay = _replay(conversation_id, message_id, history_text(rt.settings, text), stored)
        yield OpenTurn(rt, conversation_id, message_id, text, replay=replay)
        return
    turn = OpenTurn(rt, conversation_id, message_id, text, attempt=attempt)
    try:
        if not store.acquire(attempt):
            raise ApiError(
                409,
                "conversation_busy",
                f"conversation {conversation_id!r} is answering other messages for more than "
                f"{store.lock_wait} s; retry later",
            )
        turn.history = [t.to_turn() for t in store.history(conversation_id)]
        turn.opened = time.perf_counter()
        yield turn
    except BaseException as e:
        if not turn.stored:
            store.abandon(attempt, redis_unreachable=_unreachable(e))
        if isinstance(e, ClaimLost):
            raise _superseded(attempt) from e
        if isinstance(e, redis.RedisError) and not turn.stored:
            raise _not_stored(attempt, e) from e
        raise
    else:
        if not turn.stored:  # the caller left without storing (e.g. a stream nobody finished)
            store.abandon(attempt)


def _replay(conversation_id: str, message_id: str, text: str, stored: StoredAnswer) -> TurnResult:
    """The replay of ``stored``; ``text`` is the message as it is stored (scrubbed with scrub_history)."""
    if stored.customer_text != text:
        raise ApiError(
            409,
            "message_id_reused",
            f"message_id {message_id!r} was already used for a different text in conversation "
            f"{conversation_id!r}; use a new message_id for a new message",
        )
    return TurnResult.from_stored(conversation_id, message_id, stored)


def _unreachable(error: BaseException) -> bool:
    return isinstance(error, (redis.ConnectionError, redis.TimeoutError))


def _not_stored(attempt: TurnAttempt, error: redis.RedisError) -> Exception:
    """A Redis failure before the commit was sent: nothing of the turn can be stored."""
    if _unreachable(error):
        return TurnNotStored(attempt.message_id, error)
    return error  # e.g. out of memory: 503 redis_error, nothing stored either


def _superseded(attempt: TurnAttempt) -> ApiError:
    return ApiError(
        409,
        "message_superseded",
        f"message_id {attempt.message_id!r} of conversation {attempt.conversation_id!r} was not stored: "
        "the conversation was erased or the message claimed by a retry while it was answered; "
        "send it again",
    )
