"""One chat turn, shared by ``/v1/chat`` and the Rasa webhook: dedupe → lock → history → reply → store.

1. With a ``message_id``, claim it (``SET NX``): an id already answered replays the stored answer
   unchanged (idempotent retries, what helpdesks expect); an id being answered right now gives 409.
2. Take the conversation's lock, so two messages of one conversation are answered in order and
   each reply sees the previous one (409 if the lock is not free within ``lock_wait_seconds``).
3. Load the stored history and ask the pipeline for a reply given that history and the new text
   (the reply model sees the multi-turn context, not only the last message).
4. Store the customer message, the reply, the status and the answer for replay in one
   ``MULTI/EXEC``. If Redis fails anywhere, the caller gets 503 and nothing partial is stored.

It knows no HTTP request formats (the blueprints do) and no reply logic (``assistant.pipeline``).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import redis

from server.errors import ApiError
from server.runtime import Runtime
from server.store.history import DuplicateInFlight, StoredTurn

log = logging.getLogger(__name__)


def run_turn(
    rt: Runtime, conversation_id: str, text: str, message_id: str | None = None
) -> tuple[dict[str, Any], bool]:
    """Answer one customer message and store the turn.

    Args:
        rt: the app's runtime (store and pipeline).
        conversation_id: a valid id (see ``server.api.schemas.ID_PATTERN``).
        text: the customer's message, validated and stripped.
        message_id: the client's id of this message; generated (uuid4 hex) when ``None``.

    Returns:
        ``(answer, replayed)``: the ``/v1/chat`` response body, and whether it is a stored answer
        replayed for a repeated ``message_id``.

    Raises:
        ApiError: 409 for a duplicate in flight or a busy conversation; 503 when no pipeline is loaded.
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
            if stored.get("_text") != text:
                raise ApiError(
                    409,
                    "message_id_reused",
                    f"message_id {message_id!r} was already used for a different text in conversation "
                    f"{conversation_id!r}; use a new message_id for a new message",
                )
            return _public(stored), True
    try:
        answer = _answer_locked(rt, conversation_id, message_id, text, dedupe=client_gave_id)
    except BaseException:
        if client_gave_id:
            store.release_message(conversation_id, message_id)
        raise
    return answer, False


def _answer_locked(
    rt: Runtime, conversation_id: str, message_id: str, text: str, *, dedupe: bool
) -> dict[str, Any]:
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
        now = time.time()
        answer = {
            "conversation_id": conversation_id,
            "message_id": message_id,
            "replies": [_reply_item(reply)],
            "confidence": round(float(reply.confidence), 4),
            "handoff": bool(reply.handoff),
        }
        turns = [
            StoredTurn(role="customer", text=text, message_id=message_id, at=now),
            StoredTurn(
                role="agent",
                text=reply.text,
                message_id=message_id,
                at=now,
                source=reply.source,
                faq_id=reply.faq_id,
                confidence=answer["confidence"],
                handoff=answer["handoff"],
            ),
        ]
        store.append_turn(
            conversation_id,
            turns,
            status="handoff" if reply.handoff else "bot",
            dedupe=(message_id, {**answer, "_text": text}) if dedupe else None,
        )
        return answer
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


def _reply_item(reply: Any) -> dict[str, Any]:
    item = {"text": reply.text, "source": reply.source}
    if reply.faq_id is not None:
        item["faq_id"] = reply.faq_id
    return item


def _public(stored: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stored.items() if not k.startswith("_")}
