"""One chat turn, shared by every channel: dedupe → lock → history → reply → store → :class:`TurnResult`.

1. With a ``message_id``, claim it (``SET NX``): an id already answered replays the stored answer
   unchanged (idempotent retries, what helpdesks expect); an id being answered right now gives 409.
2. Take the conversation's lock, so two messages of one conversation are answered in order and
   each reply sees the previous one (409 if the lock is not free within ``lock_wait_seconds``).
3. Load the stored history and ask the pipeline for a reply given that history and the new text
   (the reply model sees the multi-turn context, not only the last message).
4. Store the customer message, the reply (both scrubbed of personal data with the setting
   ``scrub_history``, ``server/store/scrubbing.py``), the status and the answer for replay in one
   ``MULTI/EXEC``. If Redis fails anywhere, the caller gets 503 and nothing partial is stored.

The result is a typed :class:`TurnResult`; each channel renders it in its own format (``/v1/chat``
JSON with :meth:`TurnResult.to_json`, the Rasa webhook's message list, a helpdesk API call). This
module knows no HTTP request formats (the blueprints do) and no reply logic (``assistant.pipeline``).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis

from assistant.pipeline import Reply
from server.errors import ApiError
from server.runtime import Runtime
from server.store.history import DuplicateInFlight, StoredAnswer, StoredTurn
from server.store.scrubbing import history_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplyItem:
    """One message sent to the customer: its text, ``source`` (faq | model | fallback) and FAQ entry."""

    text: str
    source: str
    faq_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """``{text, source, faq_id?}`` as in the ``/v1/chat`` body (``faq_id`` only when set)."""
        item: dict[str, Any] = {"text": self.text, "source": self.source}
        if self.faq_id is not None:
            item["faq_id"] = self.faq_id
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
            replies=(ReplyItem(reply.text, reply.source, reply.faq_id),),
            confidence=round(float(reply.confidence), 4),
            handoff=bool(reply.handoff),
        )

    @classmethod
    def from_stored(cls, conversation_id: str, message_id: str, stored: StoredAnswer) -> TurnResult:
        """The replay of an answer stored for ``message_id``."""
        return cls(
            conversation_id=conversation_id,
            message_id=message_id,
            replies=tuple(ReplyItem(r["text"], r["source"], r.get("faq_id")) for r in stored.replies),
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
            if stored.customer_text != history_text(rt.settings, text):
                raise ApiError(
                    409,
                    "message_id_reused",
                    f"message_id {message_id!r} was already used for a different text in conversation "
                    f"{conversation_id!r}; use a new message_id for a new message",
                )
            return TurnResult.from_stored(conversation_id, message_id, stored)
    try:
        return _answer_locked(rt, conversation_id, message_id, text, dedupe=client_gave_id)
    except BaseException:
        if client_gave_id:
            store.release_message(conversation_id, message_id)
        raise


def _answer_locked(
    rt: Runtime, conversation_id: str, message_id: str, text: str, *, dedupe: bool
) -> TurnResult:
    store = rt.store
    lock = store.lock(conversation_id)
    if not lock.acquire():
        raise ApiError(
            409,
            "conversation_busy",
            f"conversation {conversation_id!r} is answering another message for more than "
            f"{store.lock_wait} s; retry later",
        )
    try:
        history = [t.to_turn() for t in store.history(conversation_id)]
        reply = rt.pipeline.respond(history, text)
        result = TurnResult.from_reply(conversation_id, message_id, reply)
        now = time.time()
        stored_text = history_text(rt.settings, text)  # scrubbed when the setting scrub_history is on
        turns = [
            StoredTurn(role="customer", text=stored_text, message_id=message_id, at=now),
            StoredTurn(
                role="agent",
                text=history_text(rt.settings, reply.text),
                message_id=message_id,
                at=now,
                source=reply.source,
                faq_id=reply.faq_id,
                confidence=result.confidence,
                handoff=result.handoff,
            ),
        ]
        answer = StoredAnswer(
            customer_text=stored_text,
            replies=tuple({**r.to_json(), "text": history_text(rt.settings, r.text)} for r in result.replies),
            confidence=result.confidence,
            handoff=result.handoff,
        )
        store.append_turn(
            conversation_id,
            turns,
            status="handoff" if result.handoff else "bot",
            dedupe=(message_id, answer) if dedupe else None,
        )
        return result
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
