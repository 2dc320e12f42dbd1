"""One chat turn, shared by every channel: dedupe → lock → history → reply → store → :class:`TurnResult`.

1. With a ``message_id``, claim it (``SET NX``): an id already answered replays the stored answer
   unchanged (idempotent retries, what helpdesks expect); an id being answered right now gives 409.
2. Take the conversation's lock, so two messages of one conversation are answered in order and
   each reply sees the previous one (409 if the lock is not free within ``lock_wait_seconds``).
3. Load the stored history and ask the pipeline for a reply given that history and the new text
   (the reply model sees the multi-turn context, not only the last message).
4. Store the customer message, the reply, the status and the answer for replay in one
   ``MULTI/EXEC``. If Redis fails anywhere, the caller gets 503 and nothing partial is stored.

The result is a typed :class:`TurnResult`; each channel renders it in its own format (``/v1/chat``
JSON with :meth:`TurnResult.to_json`, the Rasa webhook's message list, a helpdesk API call).
:func:`run_turn` is steps 1-3 (:func:`open_turn`, a context manager) around one ``pipeline.respond``
call and step 4 (:meth:`OpenTurn.store`); the streaming endpoint (``server/streaming.py``) runs the
same steps around a streamed reply. This
module knows no HTTP request formats (the blueprints do) and no reply logic (``assistant.pipeline``).
"""

from __future__ import annotations

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
from server.errors import ApiError
from server.runtime import Runtime
from server.store.history import DialogStore, DuplicateInFlight, StoredAnswer, StoredTurn

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
    """Answer one customer message and store the turn.

    Args:
        rt: the app's runtime (store and pipeline).
        conversation_id: a valid id (see ``server.api.schemas.ID_PATTERN``).
        text: the customer's message, validated and stripped.
        message_id: the client's id of this message; generated (uuid4 hex) when ``None``.

    Returns:
        the :class:`TurnResult` (``replayed`` when it is the stored answer to a repeated ``message_id``).

    Raises:
        ApiError: 409 for a duplicate in flight, a ``message_id`` reused for another text, or a busy
            conversation.
        redis.RedisError: Redis unreachable (mapped to 503 by ``server/errors.py``).
        ModelError: the reply model failed (503).
    """
    with open_turn(rt, conversation_id, text, message_id) as turn:
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
        stored: whether :meth:`store` ran.
    """

    def __init__(
        self,
        rt: Runtime,
        conversation_id: str,
        message_id: str,
        text: str,
        *,
        dedupe: bool,
        history: list[Turn] | None = None,
        replay: TurnResult | None = None,
    ) -> None:
        self.rt = rt
        self.conversation_id = conversation_id
        self.message_id = message_id
        self.text = text
        self.dedupe = dedupe
        self.history = history or []
        self.replay = replay
        self.stored = False

    def store(self, reply: Reply) -> TurnResult:
        """Store the customer message, ``reply``, the status and the answer for replay in one MULTI/EXEC.

        Raises:
            redis.RedisError: nothing of the turn was stored.
        """
        result = TurnResult.from_reply(self.conversation_id, self.message_id, reply)
        now = time.time()
        turns = [
            StoredTurn(role="customer", text=self.text, message_id=self.message_id, at=now),
            StoredTurn(
                role="agent",
                text=reply.text,
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
            customer_text=self.text,
            replies=tuple(r.to_json() for r in result.replies),
            confidence=result.confidence,
            handoff=result.handoff,
        )
        self.rt.store.append_turn(
            self.conversation_id,
            turns,
            status="handoff" if result.handoff else "bot",
            dedupe=(self.message_id, answer) if self.dedupe else None,
        )
        self.stored = True
        return result


@contextmanager
def open_turn(
    rt: Runtime, conversation_id: str, text: str, message_id: str | None = None
) -> Iterator[OpenTurn]:
    """Steps 1-3 of a turn around the caller's reply: claim the message id, lock, load the history.

    On leaving, the lock is released; when the block raised or did not store, the message id's claim is
    released too, so the client may retry. Arguments as :func:`run_turn`.

    Raises:
        ApiError: 409 as :func:`run_turn` (before the block runs).
        redis.RedisError: Redis unreachable.
    """
    store = rt.store
    client_gave_id = message_id is not None
    message_id = message_id or uuid.uuid4().hex
    if client_gave_id:
        try:
            stored = store.claim_message(conversation_id, message_id)
        except DuplicateInFlight as e:
            raise ApiError(
                409,
                "duplicate_in_flight",
                f"message_id {message_id!r} of conversation {conversation_id!r} is being answered; "
                "retry in a moment to get its answer",
            ) from e
        if stored is not None:
            if stored.customer_text != text:
                raise ApiError(
                    409,
                    "message_id_reused",
                    f"message_id {message_id!r} was already used for a different text in conversation "
                    f"{conversation_id!r}; use a new message_id for a new message",
                )
            replay = TurnResult.from_stored(conversation_id, message_id, stored)
            yield OpenTurn(rt, conversation_id, message_id, text, dedupe=False, replay=replay)
            return
    turn = OpenTurn(rt, conversation_id, message_id, text, dedupe=client_gave_id)
    try:
        with _locked(store, conversation_id):
            turn.history = [t.to_turn() for t in store.history(conversation_id)]
            yield turn
    finally:
        if client_gave_id and not turn.stored:
            store.release_message(conversation_id, message_id)


@contextmanager
def _locked(store: DialogStore, conversation_id: str) -> Iterator[None]:
    lock = store.lock(conversation_id)
    if not lock.acquire():
        raise ApiError(
            409,
            "conversation_busy",
            f"conversation {conversation_id!r} is answering another message for more than "
            f"{store.lock_wait} s; retry later",
        )
    try:
        yield
    finally:
        try:
            lock.release()
        except redis.exceptions.LockNotOwnedError:
            log.warning(
                "conversation %r: the turn outlived its lock (lock_timeout_seconds %s); another "
                "message of it may have been answered meanwhile",
                conversation_id,
                store.lock_timeout,
            )
        except redis.RedisError:
            pass  # Redis down: the lock expires by itself after lock_timeout_seconds
