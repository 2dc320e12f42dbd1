"""The dialog store: each conversation's bounded history and state in Redis, one transaction per turn.

Key layout (``P`` = the ``redis_prefix`` setting; ``{conv:<id>}`` is a Redis Cluster hash tag, so all
keys of one conversation live in one slot and one ``MULTI/EXEC`` may touch them all):

* ``P:{conv:<id>}:history`` list of JSON turns, oldest first; ``RPUSH`` then ``LTRIM`` to the last
  ``max_turns``; ``EXPIRE`` ttl on every write.
* ``P:{conv:<id>}:state`` hash ``status`` (``bot`` | ``handoff``), ``updated_at`` (Unix seconds),
  ``turns`` (messages ever stored); same TTL.
* ``P:{conv:<id>}:dedupe:<message_id>`` string: ``pending`` while a message is being answered
  (``SET NX EX``, short TTL), then the JSON answer (``dedupe_ttl``), replayed for a retry of the same
  message_id. It carries the conversation's hash tag (not ``P:dedupe:<message_id>``) so that the
  turn's ``MULTI/EXEC`` that stores the answer stays in one Cluster slot.
* ``P:{conv:<id>}:lock`` a redis-py :class:`redis.lock.Lock` serialising turns of one conversation.

A turn (customer message, agent reply, state, dedupe answer) is written by one ``MULTI/EXEC``: it is
stored whole or not at all. Erasing a conversation deletes its keys, dedupe keys found by ``SCAN``
(never ``KEYS``). Clients use a connection pool with socket timeouts and retry with exponential
backoff (:func:`connect`). Redis errors propagate as ``redis.ConnectionError``/``TimeoutError``;
the HTTP layer maps them to 503.

It does not decide replies (``assistant.pipeline``) and does not start Redis (``embedded_redis.py``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from assistant.data import Turn

#: State values of a conversation.
STATUSES = ("bot", "handoff")
_PENDING = b"pending"


@dataclass(frozen=True)
class StoredTurn:
    """One stored message.

    Attributes:
        role: ``"customer"`` or ``"agent"``.
        text: the message text.
        message_id: the client's message id (customer turns) or the answered id (agent turns).
        at: Unix time in seconds when it was stored.
        source: for agent turns ``"faq"`` | ``"model"`` | ``"fallback"``; ``None`` for customer turns.
        faq_id: the FAQ entry an agent reply came from, if any.
        confidence: the reply's confidence in [0, 1] (agent turns).
        handoff: whether the reply handed the conversation to a human (agent turns).
        entity: the FAQ entity the conversation was about when the reply was made (agent turns of a
            conversational FAQ index), else ``None``.
    """

    role: str
    text: str
    message_id: str
    at: float
    source: str | None = None
    faq_id: str | None = None
    confidence: float | None = None
    handoff: bool = False
    entity: str | None = None

    def to_turn(self) -> Turn:
        """The :class:`assistant.data.Turn` the reply pipeline sees."""
        return Turn(role=self.role, text=self.text)


@dataclass(frozen=True)
class Conversation:
    """A stored conversation: its messages (oldest first), status, last update and seconds left."""

    conversation_id: str
    turns: tuple[StoredTurn, ...]
    status: str
    updated_at: float | None
    ttl_seconds: int | None


def connect(
    url: str,
    *,
    socket_timeout: float,
    connect_timeout: float,
    retries: int,
    backoff_base: float,
    backoff_cap: float,
    max_connections: int,
) -> redis.Redis:
    """A Redis client on its own connection pool, with timeouts and retry with exponential backoff.

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL.
        socket_timeout: seconds a command may take; connect_timeout: seconds to connect.
        retries: retries after ``ConnectionError``/``TimeoutError``; the backoff before retry ``i``
            is ``min(backoff_cap, backoff_base * 2**i)`` seconds (redis-py ``ExponentialBackoff``).
        max_connections: pool size.
    """
    pool = redis.ConnectionPool.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(ExponentialBackoff(cap=backoff_cap, base=backoff_base), retries),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        max_connections=max_connections,
        health_check_interval=30,
    )
    return redis.Redis(connection_pool=pool)


@dataclass(frozen=True)
class StoredAnswer:
    """The answer stored under a message's dedupe key, replayed for a retry of the same ``message_id``.

    Attributes:
        customer_text: the message it answered (a retry with another text is refused).
        replies: ``[{text, source, faq_id?, entity?}]`` as sent.
        confidence: of the route taken, in [0, 1].
        handoff: whether the answer handed the conversation to a person.
    """

    customer_text: str
    replies: tuple[dict[str, Any], ...]
    confidence: float
    handoff: bool

    def to_json(self) -> str:
        """The stored JSON string."""
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: bytes | str) -> StoredAnswer:
        """Parse a stored answer; also reads the format of earlier versions (the ``/v1/chat`` body with
        the customer text under ``_text``), so answers stored before an upgrade still replay."""
        obj = json.loads(raw)
        if "_text" in obj:
            return cls(obj["_text"], tuple(obj["replies"]), obj["confidence"], obj["handoff"])
        return cls(obj["customer_text"], tuple(obj["replies"]), obj["confidence"], obj["handoff"])


class DuplicateInFlight(Exception):
    """A message with this message_id is being answered right now (HTTP 409)."""


class DialogStore:
    """Read and write conversations in Redis.

    Args:
        client: a Redis client (see :func:`connect`).
        prefix: key prefix.
        max_turns: messages kept per conversation (customer and agent messages count one each).
        ttl_seconds: a conversation expires this long after its last write.
        dedupe_ttl_seconds: how long an answer is kept for replay by message_id.
        lock_timeout: seconds after which a turn lock expires even if its holder died.
        lock_wait: seconds a turn waits for the conversation's lock.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str,
        max_turns: int,
        ttl_seconds: int,
        dedupe_ttl_seconds: int,
        lock_timeout: float,
        lock_wait: float,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.max_turns = max_turns
        self.ttl_seconds = ttl_seconds
        self.dedupe_ttl_seconds = dedupe_ttl_seconds
        self.lock_timeout = lock_timeout
        self.lock_wait = lock_wait

    # ------------------------------------------------------------------ keys
    def _base(self, conversation_id: str) -> str:
        return f"{self.prefix}:{{conv:{conversation_id}}}"

    def history_key(self, conversation_id: str) -> str:
        return f"{self._base(conversation_id)}:history"

    def state_key(self, conversation_id: str) -> str:
        return f"{self._base(conversation_id)}:state"

    def dedupe_key(self, conversation_id: str, message_id: str) -> str:
        return f"{self._base(conversation_id)}:dedupe:{message_id}"

    def lock_key(self, conversation_id: str) -> str:
        return f"{self._base(conversation_id)}:lock"

    # ----------------------------------------------------------------- reads
    def ping(self) -> bool:
        """``True`` if Redis answers; raises ``redis.RedisError`` otherwise."""
        return bool(self.client.ping())

    def history(self, conversation_id: str) -> list[StoredTurn]:
        """The stored messages of a conversation, oldest first (empty if none or expired)."""
        raw = self.client.lrange(self.history_key(conversation_id), 0, -1)
        return [StoredTurn(**json.loads(item)) for item in raw]

    def load(self, conversation_id: str) -> Conversation | None:
        """The whole stored conversation, or ``None`` if it does not exist (never stored, expired, erased)."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.lrange(self.history_key(conversation_id), 0, -1)
            pipe.hgetall(self.state_key(conversation_id))
            pipe.ttl(self.history_key(conversation_id))
            raw, state, ttl = pipe.execute()
        if not raw and not state:
            return None
        status = state.get(b"status", b"bot").decode()
        updated = float(state[b"updated_at"]) if b"updated_at" in state else None
        return Conversation(
            conversation_id=conversation_id,
            turns=tuple(StoredTurn(**json.loads(item)) for item in raw),
            status=status,
            updated_at=updated,
            ttl_seconds=ttl if ttl >= 0 else None,
        )

    # ---------------------------------------------------------------- dedupe
    def claim_message(self, conversation_id: str, message_id: str) -> StoredAnswer | None:
        """Mark ``message_id`` as being answered, or return the answer already stored for it.

        Returns:
            ``None`` when the claim succeeded (the caller answers, then :meth:`append_turn` stores the
            answer, or :meth:`release_message` on failure); otherwise the :class:`StoredAnswer` to
            replay unchanged.

        Raises:
            DuplicateInFlight: the same message_id is being answered right now.
        """
        key = self.dedupe_key(conversation_id, message_id)
        pending_ttl = max(1, int(self.lock_timeout + self.lock_wait))
        if self.client.set(key, _PENDING, nx=True, ex=pending_ttl):
            return None
        stored = self.client.get(key)
        if stored is None:  # expired between SET and GET: claim again once
            if self.client.set(key, _PENDING, nx=True, ex=pending_ttl):
                return None
            stored = self.client.get(key)
        if stored == _PENDING or stored is None:
            raise DuplicateInFlight(message_id)
        return StoredAnswer.from_json(stored)

    def release_message(self, conversation_id: str, message_id: str) -> None:
        """Forget a ``pending`` claim after a failed turn, so the client may retry (best effort)."""
        key = self.dedupe_key(conversation_id, message_id)
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.watch(key)
                if pipe.get(key) == _PENDING:
                    pipe.multi()
                    pipe.delete(key)
                    pipe.execute()
        except redis.RedisError:
            pass  # Redis down: the pending marker expires by itself after its short TTL

    def lock(self, conversation_id: str) -> redis.lock.Lock:
        """The turn lock of a conversation (use ``acquire``/``release`` or as a context manager)."""
        return self.client.lock(
            self.lock_key(conversation_id), timeout=self.lock_timeout, blocking_timeout=self.lock_wait
        )

    # ---------------------------------------------------------------- writes
    def append_turn(
        self,
        conversation_id: str,
        turns: Sequence[StoredTurn],
        *,
        status: str,
        dedupe: tuple[str, StoredAnswer] | None = None,
    ) -> None:
        """Store one turn — its messages, the new status and the answer for replay — in one MULTI/EXEC.

        The history is trimmed to the last ``max_turns`` messages and every key of the conversation
        gets its TTL refreshed. Either all of it is stored or (Redis failing) none of it.

        Args:
            conversation_id: the conversation.
            turns: the messages of this turn, in order (customer message, then agent reply).
            status: ``"bot"`` or ``"handoff"``.
            dedupe: ``(message_id, answer)`` to store for replay, or ``None``.

        Raises:
            ValueError: ``status`` is not one of :data:`STATUSES`.
            redis.RedisError: Redis is unreachable or failed (nothing of the turn was applied).
        """
        if status not in STATUSES:
            raise ValueError(f"status must be one of {list(STATUSES)}, got {status!r}")
        history, state = self.history_key(conversation_id), self.state_key(conversation_id)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.rpush(history, *[json.dumps(asdict(t), ensure_ascii=False) for t in turns])
            pipe.ltrim(history, -self.max_turns, -1)
            pipe.expire(history, self.ttl_seconds)
            pipe.hset(state, mapping={"status": status, "updated_at": repr(time.time())})
            pipe.hincrby(state, "turns", len(turns))
            pipe.expire(state, self.ttl_seconds)
            if dedupe is not None:
                message_id, answer = dedupe
                pipe.set(
                    self.dedupe_key(conversation_id, message_id),
                    answer.to_json(),
                    ex=self.dedupe_ttl_seconds,
                )
            pipe.execute()

    def delete(self, conversation_id: str) -> bool:
        """Erase a conversation: history, state, lock and every dedupe answer (found with ``SCAN``).

        Returns:
            whether there was a history or state to erase.
        """
        keys = [
            self.history_key(conversation_id),
            self.state_key(conversation_id),
            self.lock_key(conversation_id),
        ]
        keys += self.client.scan_iter(match=self.dedupe_key(conversation_id, "*"), count=500)
        with self.client.pipeline(transaction=False) as pipe:
            pipe.exists(keys[0], keys[1])
            for start in range(0, len(keys), 500):
                pipe.delete(*keys[start : start + 500])
            existed = pipe.execute()[0]
        return existed > 0
