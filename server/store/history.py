"""The dialog store: each conversation's bounded history and state in Redis, each turn stored at most once.

Key layout (``P`` = the ``redis_prefix`` setting; ``{conv:<id>}`` is a Redis Cluster hash tag, so all
keys of one conversation live in one slot and one script may touch them all):

* ``P:{conv:<id>}:history`` list of JSON turns, oldest first; ``RPUSH`` then ``LTRIM`` to the last
  ``max_turns``; ``EXPIRE`` ttl on every write.
* ``P:{conv:<id>}:state`` hash ``status`` (``bot`` | ``handoff``), ``updated_at`` (Unix seconds),
  ``turns`` (messages ever stored); same TTL.
* ``P:{conv:<id>}:dedupe:<message_id>`` the message's marker: ``pending:<token>`` while an attempt
  answers it, ``aborted:<token>`` after an attempt gave up, then the JSON :class:`StoredAnswer`
  (replayed for a retry of the same message_id). Every turn has one, also those whose client gave
  no message_id (a generated id).
* ``P:{conv:<id>}:lock`` the token of the attempt answering a message of the conversation now;
  ``P:{conv:<id>}:lock:queue`` sorted set of the attempts waiting for it, first come first served.

A turn is claim → acquire → read → reply → commit, and every write is one of the Lua scripts of
``server/store/scripts.py``, guarded by the attempt's token: applying a script twice, or late (a
copy queued in a frozen Redis, or re-sent by the connection's retry policy), changes nothing. So the
retry with backoff configured by :func:`connect` only ever repeats idempotent commands, and a turn is
stored whole, once, or not at all. When the commit's reply is lost (timeout, dropped connection),
:meth:`DialogStore.resolve` asks Redis what happened before anyone is told "nothing was stored".

It does not decide replies (``assistant.pipeline``) and does not start Redis (``embedded.py``).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from assistant.data import Turn
from server.store import scripts
from server.store.janitor import Janitor

log = logging.getLogger(__name__)

#: State values of a conversation.
STATUSES = ("bot", "handoff")
ROLES = ("customer", "agent")
#: An answer is kept at least this long after its claim expires, so that an attempt whose commit
#: reply was lost can still find it when it resolves the outcome (see :meth:`DialogStore.resolve`).
RESOLVE_MARGIN_SECONDS = 300


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

    def to_json(self) -> str:
        """The stored JSON string."""
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: bytes | str) -> StoredTurn:
        """Parse a stored message. Fields this version does not know (written by a newer one) are ignored.

        Raises:
            ValueError: not JSON, not an object, or a known field missing or of the wrong type.
        """
        obj = json.loads(raw)
        if not isinstance(obj, dict):
            raise ValueError(f"a JSON {type(obj).__name__}, not an object")  # noqa: TRY004 (bad data)
        problems = []
        if obj.get("role") not in ROLES:
            problems.append(f"role {obj.get('role')!r} is not one of {list(ROLES)}")
        for name in ("text", "message_id"):
            if not isinstance(obj.get(name), str):
                problems.append(f"{name} is not a string")
        if not _is_number(obj.get("at")):
            problems.append("at is not a number")
        for name in ("source", "faq_id", "entity"):
            if obj.get(name) is not None and not isinstance(obj[name], str):
                problems.append(f"{name} is not a string or null")
        if obj.get("confidence") is not None and not _is_number(obj["confidence"]):
            problems.append("confidence is not a number or null")
        if not isinstance(obj.get("handoff", False), bool):
            problems.append("handoff is not a boolean")
        if problems:
            raise ValueError("; ".join(problems))
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in obj.items() if k in known})


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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

    The retry re-sends a command after ``ConnectionError``/``TimeoutError``. That is safe here because
    every command :class:`DialogStore` sends is a read or an idempotent script (see the module
    docstring); do not send other writes through this client.

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL; ``redis+cluster://host:port[,...]`` for
            a Redis Cluster (a ``redis.cluster.RedisCluster`` is returned).
        socket_timeout: seconds a command may take; connect_timeout: seconds to connect.
        retries: retries after ``ConnectionError``/``TimeoutError``; the backoff before retry ``i``
            is ``min(backoff_cap, backoff_base * 2**i)`` seconds (redis-py ``ExponentialBackoff``).
        max_connections: pool size.
    """
    if url.startswith("redis+cluster://"):  # a Redis Cluster (server/store/cluster.py)
        from server.store.cluster import connect_cluster

        return connect_cluster(
            url,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
            retries=retries,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            max_connections=max_connections,
        )
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
    """The answer stored under a message's marker, replayed for a retry of the same ``message_id``.

    Attributes:
        customer_text: the message it answered (a retry with another text is refused).
        replies: ``[{text, source, faq_id?, entity?}]`` as sent.
        confidence: of the route taken, in [0, 1].
        handoff: whether the answer handed the conversation to a person.
        token: the attempt that stored it (``""`` for answers stored by earlier versions).
    """

    customer_text: str
    replies: tuple[dict[str, Any], ...]
    confidence: float
    handoff: bool
    token: str = ""

    def to_json(self) -> str:
        """The stored JSON string."""
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: bytes | str) -> StoredAnswer:
        """Parse a stored answer; also reads the format of earlier versions (the ``/v1/chat`` body with
        the customer text under ``_text``, no token), so answers stored before an upgrade still replay.

        Raises:
            ValueError: not an answer of any known format.
        """
        try:
            obj = json.loads(raw)
            text = obj["_text"] if "_text" in obj else obj["customer_text"]
            answer = cls(text, tuple(obj["replies"]), obj["confidence"], obj["handoff"], obj.get("token", ""))
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"not a stored answer ({type(e).__name__}: {e})") from e
        if not isinstance(answer.customer_text, str) or not all(isinstance(r, dict) for r in answer.replies):
            raise ValueError("not a stored answer (customer_text or replies of the wrong type)")
        return answer


@dataclass
class TurnAttempt:
    """One attempt to answer one message; create it with :meth:`DialogStore.attempt`.

    Attributes:
        conversation_id, message_id: the message.
        token: random, unique to this attempt; every script it runs is guarded by it.
        client_id: the client chose the message_id (its answer is kept ``dedupe_ttl_seconds``;
            a generated id's only long enough to resolve an unknown outcome).
        claim_deadline: ``time.monotonic()`` after which Redis has certainly expired the claim (set
            by :meth:`DialogStore.claim`).
    """

    conversation_id: str
    message_id: str
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    client_id: bool = True
    claim_deadline: float = 0.0


@dataclass(frozen=True)
class CommitOutcome:
    """What is stored for a message after :meth:`DialogStore.commit`.

    Attributes:
        answer: the stored answer of the message.
        ours: stored by this attempt (``False``: another attempt answered the same message_id first;
            this attempt stored nothing and ``answer`` is that other attempt's).
        lock_held: the attempt still held the conversation's lock when it stored (``False``: the turn
            outlived ``lock_timeout_seconds``; another message may have been answered meanwhile).
    """

    answer: StoredAnswer
    ours: bool
    lock_held: bool = True


class DuplicateInFlight(Exception):
    """A message with this message_id is being answered right now (HTTP 409)."""


class ClaimLost(Exception):
    """The attempt no longer owns its message: its claim expired or the conversation was erased
    meanwhile. Nothing of the attempt was stored (HTTP 409)."""


class TurnNotStored(redis.ConnectionError):
    """Redis failed during the turn and nothing of it is, or will ever be, stored (HTTP 503).

    A ``redis.ConnectionError``, so callers that retry Redis outages (the channels' job queue) treat
    it as one.

    Attributes:
        cause: the Redis error.
    """

    def __init__(self, message_id: str, cause: BaseException) -> None:
        super().__init__(f"message {message_id!r} not stored: {cause}")
        self.message_id = message_id
        self.cause = cause


class TurnOutcomeUnknown(redis.TimeoutError):
    """The commit was sent but Redis could not be asked, until the claim expired, whether it was
    applied (HTTP 504). Retrying the same message_id replays the answer if it was stored (a
    ``redis.TimeoutError``, so callers that retry Redis outages do exactly that)."""

    def __init__(self, message_id: str, cause: BaseException) -> None:
        super().__init__(f"outcome of message {message_id!r} unknown: {cause}")
        self.message_id = message_id
        self.cause = cause


_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError)
#: What follows ``:dedupe:`` in a marker key (the message id rule of ``server/api/schemas.py``).
_MESSAGE_ID_RE = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


class _NotSent(Exception):
    """A command that never left this process (no connection could be made ready)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class DialogStore:
    """Read and write conversations in Redis.

    Args:
        client: a Redis client (see :func:`connect`).
        prefix: key prefix.
        max_turns: messages kept per conversation (customer and agent messages count one each).
        ttl_seconds: a conversation expires this long after its last write.
        dedupe_ttl_seconds: how long an answer to a client's message_id is kept for replay.
        lock_timeout: seconds after which a turn lock expires even if its holder died.
        lock_wait: seconds a turn waits for the conversation's lock.
    """

    #: Seconds between two tries of the lock while waiting for it.
    lock_poll_seconds = 0.02

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
        self._claim = client.register_script(scripts.CLAIM)
        self._acquire = client.register_script(scripts.ACQUIRE)
        self._commit = client.register_script(scripts.COMMIT)
        self._abandon = client.register_script(scripts.ABANDON)
        self.janitor: Janitor[TurnAttempt] = Janitor(self._abandon_once)

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

    def queue_key(self, conversation_id: str) -> str:
        return f"{self._base(conversation_id)}:lock:queue"

    @property
    def claim_seconds(self) -> float:
        """How long a claim lives: a turn waits for the lock, then holds it (``lock_wait + lock_timeout``)."""
        return self.lock_wait + self.lock_timeout

    @property
    def _stale_waiter_ms(self) -> int:
        # a waiter gives up after lock_wait; one still queued a second later has died
        return int((self.lock_wait + 1.0) * 1000)

    # ----------------------------------------------------------------- reads
    def ping(self) -> bool:
        """``True`` if Redis answers; raises ``redis.RedisError`` otherwise."""
        return bool(self.client.ping())

    def history(self, conversation_id: str) -> list[StoredTurn]:
        """The stored messages of a conversation, oldest first (empty if none or expired); a message
        this version cannot read is skipped with a logged warning."""
        raw = self.client.lrange(self.history_key(conversation_id), 0, -1)
        return self._parse_history(conversation_id, raw)

    def load(self, conversation_id: str) -> Conversation | None:
        """The whole stored conversation, or ``None`` if it does not exist (never stored, expired, erased).

        Messages or state fields this version cannot read are skipped with a logged warning (a
        rolling upgrade or rollback may leave some); the rest is returned.
        """
        with self.client.pipeline(transaction=True) as pipe:
            pipe.lrange(self.history_key(conversation_id), 0, -1)
            pipe.hgetall(self.state_key(conversation_id))
            pipe.ttl(self.history_key(conversation_id))
            raw, state, ttl = pipe.execute()
        if not raw and not state:
            return None
        status = state.get(b"status", b"bot").decode("utf-8", errors="replace")
        updated = None
        if b"updated_at" in state:
            try:
                updated = float(state[b"updated_at"])
            except ValueError:
                log.warning("conversation %r: unreadable state field updated_at; ignored", conversation_id)
        return Conversation(
            conversation_id=conversation_id,
            turns=tuple(self._parse_history(conversation_id, raw)),
            status=status,
            updated_at=updated,
            ttl_seconds=ttl if ttl >= 0 else None,
        )

    @staticmethod
    def _parse_history(conversation_id: str, raw: Sequence[bytes]) -> list[StoredTurn]:
        turns = []
        for position, item in enumerate(raw):
            try:
                turns.append(StoredTurn.from_json(item))
            except (ValueError, TypeError) as e:  # json errors are ValueErrors (UnicodeDecodeError too)
                log.warning(
                    "conversation %r: skipped stored message %d of %d, unreadable by this version "
                    "(%s: %s); the other messages are used",
                    conversation_id,
                    position + 1,
                    len(raw),
                    type(e).__name__,
                    str(e)[:200],
                )
        return turns

    # ------------------------------------------------------------ the turn
    def attempt(self, conversation_id: str, message_id: str, *, client_id: bool) -> TurnAttempt:
        """A new :class:`TurnAttempt` (no I/O)."""
        return TurnAttempt(conversation_id, message_id, client_id=client_id)

    def claim(self, attempt: TurnAttempt) -> StoredAnswer | None:
        """Claim the attempt's message and queue it for the conversation's lock.

        Returns:
            ``None`` when the attempt now owns the message (go on with :meth:`acquire`; finish with
            :meth:`commit` or :meth:`abandon`); otherwise the :class:`StoredAnswer` already stored for
            this message_id, to replay unchanged.

        Raises:
            DuplicateInFlight: another live attempt is answering this message_id right now.
            ValueError: the stored answer cannot be read (written by another version, or damaged).
            redis.RedisError: Redis failed; the claim may or may not be applied (:meth:`abandon`).
        """
        status, value = self._claim(
            keys=self._claim_keys(attempt),
            args=[attempt.token, int(self.claim_seconds * 1000), self._stale_waiter_ms],
        )
        attempt.claim_deadline = time.monotonic() + self.claim_seconds
        status = status.decode()
        if status == "claimed":
            return None
        if status == "answered":
            return StoredAnswer.from_json(value)
        raise DuplicateInFlight(attempt.message_id)  # 'busy', or 'aborted' (cannot happen to a live call)

    def acquire(self, attempt: TurnAttempt) -> bool:
        """Wait up to ``lock_wait`` seconds for the conversation's lock, first come first served.

        Returns:
            whether the lock is now the attempt's.

        Raises:
            ClaimLost: the attempt's claim is gone (the conversation was erased meanwhile).
            redis.RedisError: Redis failed (:meth:`abandon` the attempt).
        """
        keys = [
            self.lock_key(attempt.conversation_id),
            self.queue_key(attempt.conversation_id),
            self.dedupe_key(attempt.conversation_id, attempt.message_id),
        ]
        args = [attempt.token, int(self.lock_timeout * 1000), self._stale_waiter_ms]
        deadline = time.monotonic() + self.lock_wait
        while True:
            got = self._acquire(keys=keys, args=args)
            if got == 1:
                return True
            if got == -1:
                raise ClaimLost(attempt.message_id)
            if time.monotonic() >= deadline:
                return False
            time.sleep(self.lock_poll_seconds)

    def commit(
        self, attempt: TurnAttempt, turns: Sequence[StoredTurn], *, status: str, answer: StoredAnswer
    ) -> CommitOutcome:
        """Store the turn — its messages, the new status and the answer for replay — and release the lock.

        One script, applied at most once: it does nothing unless the attempt still owns its message.
        The history is trimmed to the last ``max_turns`` messages and every key of the conversation
        gets its TTL refreshed. If Redis's reply is lost, the outcome is resolved (:meth:`resolve`)
        before this returns or raises.

        Args:
            attempt: a claimed attempt holding the lock.
            turns: the messages of this turn, in order (customer message, then agent reply).
            status: ``"bot"`` or ``"handoff"``.
            answer: the answer to store for replay (its ``token`` is set here).

        Returns:
            the :class:`CommitOutcome` (``ours`` unless another attempt answered the message first).

        Raises:
            ValueError: ``status`` is not one of :data:`STATUSES`.
            ClaimLost: the attempt's claim expired or was erased; nothing stored.
            TurnNotStored: Redis failed and nothing of the turn is stored.
            TurnOutcomeUnknown: Redis could not be asked whether the turn was stored.
            redis.ResponseError: Redis refused the script (e.g. out of memory); nothing stored.
        """
        if status not in STATUSES:
            raise ValueError(f"status must be one of {list(STATUSES)}, got {status!r}")
        answer = StoredAnswer(
            answer.customer_text, answer.replies, answer.confidence, answer.handoff, attempt.token
        )
        keep = self.dedupe_ttl_seconds if attempt.client_id else 0
        answer_ttl = max(keep, math.ceil(self.claim_seconds) + RESOLVE_MARGIN_SECONDS)
        conv = attempt.conversation_id
        keys = [
            self.history_key(conv),
            self.state_key(conv),
            self.dedupe_key(conv, attempt.message_id),
            self.lock_key(conv),
            self.queue_key(conv),
        ]
        args = [
            attempt.token,
            answer.to_json(),
            answer_ttl,
            self.max_turns,
            self.ttl_seconds,
            status,
            repr(time.time()),
            *[t.to_json() for t in turns],
        ]
        try:
            applied, detail = self._eval_once(self._commit, keys, args)
        except _NotSent as e:  # Redis unreachable before the script left: it can never apply
            self.abandon(attempt, redis_unreachable=True)
            raise TurnNotStored(attempt.message_id, e.cause) from e.cause
        except _UNREACHABLE as e:  # sent, reply lost: it may have applied, or still may
            return self.resolve(attempt, e)
        except redis.RedisError:
            self.abandon(attempt)
            raise
        if applied == 1:
            return CommitOutcome(answer, ours=True, lock_held=bool(detail))
        # not applied: a copy of this call was (our own answer is there), or the claim is gone
        return self._outcome_of_marker(attempt, detail or b"")

    def _eval_once(self, script: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run ``script`` once on a pooled connection, without the connection's automatic re-send.

        Raises:
            _NotSent: no connection could be made ready (connecting is retried by the pool's
                policy): the command never left this process.
            redis.ConnectionError, redis.TimeoutError: the command was sent (or partly), its reply
                did not come: it may have been applied, or may still be.
            redis.ResponseError: Redis refused it.
        """
        client = self.client
        if hasattr(client, "get_node_from_key"):  # Redis Cluster: the pool of the node serving the keys' slot
            client = client.get_redis_connection(client.get_node_from_key(keys[0]))
        pool = client.connection_pool
        try:
            conn = pool.get_connection()
        except _UNREACHABLE as e:
            raise _NotSent(e) from e
        try:
            conn.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
            try:
                return conn.read_response()
            except redis.exceptions.NoScriptError:  # not loaded (e.g. Redis restarted): send the source
                conn.send_command("EVAL", script.script, len(keys), *keys, *args)
                return conn.read_response()
        except _UNREACHABLE:
            conn.disconnect()
            raise
        finally:
            pool.release(conn)

    def _outcome_of_marker(self, attempt: TurnAttempt, value: bytes) -> CommitOutcome:
        try:
            stored = StoredAnswer.from_json(value)
        except ValueError:
            raise ClaimLost(attempt.message_id) from None
        return CommitOutcome(stored, ours=stored.token == attempt.token)

    def resolve(self, attempt: TurnAttempt, cause: BaseException) -> CommitOutcome:
        """Find out whether an attempt whose commit reply was lost stored its turn, and end the attempt.

        Runs :data:`~server.store.scripts.ABANDON` (it fences every late copy of the commit) until
        Redis answers, at most until the claim has expired (after that no copy can apply).

        Returns:
            the :class:`CommitOutcome` when the turn (or another attempt's) is stored.

        Raises:
            TurnNotStored: nothing of the attempt is or ever will be stored.
            ClaimLost: another attempt owns the message now; nothing of this one is stored.
            TurnOutcomeUnknown: Redis did not answer before the claim expired.
        """
        started = time.monotonic()
        while True:
            try:
                status, value = self._abandon_once(attempt)
            except _UNREACHABLE as e:
                if time.monotonic() >= attempt.claim_deadline:
                    log.warning(
                        "message %r: the commit's reply was lost and Redis did not answer for %.1f s: "
                        "outcome unknown",
                        attempt.message_id,
                        time.monotonic() - started,
                    )
                    raise TurnOutcomeUnknown(attempt.message_id, e) from cause
                time.sleep(min(0.25, max(0.0, attempt.claim_deadline - time.monotonic())))
                continue
            log.warning(
                "message %r: the commit's reply was lost (%s); resolved after %.1f s: %s",
                attempt.message_id,
                type(cause).__name__,
                time.monotonic() - started,
                {"aborted": "not stored", "answered": "stored", "other": "claimed by another attempt"}[
                    status
                ],
            )
            if status == "aborted":
                raise TurnNotStored(attempt.message_id, cause)
            if status == "answered":
                return self._outcome_of_marker(attempt, value)
            raise ClaimLost(attempt.message_id)

    def abandon(self, attempt: TurnAttempt, *, redis_unreachable: bool = False) -> None:
        """End an attempt that will not commit: release its lock and queue place and fence its claim.

        If Redis is unreachable (or ``redis_unreachable`` says it just was: then no synchronous try is
        made, which would wait out the connection's timeouts and retries once more), the
        :attr:`janitor` retries in the background until Redis answers, so that nothing of the attempt
        blocks the client's retry or the conversation once Redis is back. Never raises for Redis errors.
        """
        if redis_unreachable:
            self.janitor.submit(attempt, time.monotonic() + self.claim_seconds)
            return
        try:
            self._abandon_once(attempt)
        except _UNREACHABLE:
            self.janitor.submit(attempt, time.monotonic() + self.claim_seconds)
        except redis.RedisError:
            log.exception("could not abandon the attempt at message %r", attempt.message_id)

    def _abandon_once(self, attempt: TurnAttempt) -> tuple[str, bytes]:
        status, value = self._abandon(
            keys=self._claim_keys(attempt), args=[attempt.token, int(self.claim_seconds * 1000)]
        )
        return status.decode(), value

    def _claim_keys(self, attempt: TurnAttempt) -> list[str]:
        return [
            self.dedupe_key(attempt.conversation_id, attempt.message_id),
            self.lock_key(attempt.conversation_id),
            self.queue_key(attempt.conversation_id),
        ]

    # ---------------------------------------------------------------- erase
    def delete(self, conversation_id: str) -> bool:
        """Erase a conversation: history, state, lock, queue and every message marker (found with ``SCAN``).

        Returns:
            whether there was a history or state to erase.
        """
        keys = [
            self.history_key(conversation_id),
            self.state_key(conversation_id),
            self.lock_key(conversation_id),
            self.queue_key(conversation_id),
        ]
        marker_prefix = self.dedupe_key(conversation_id, "").encode()
        for key in self.client.scan_iter(match=_glob_escape(marker_prefix.decode()) + "*", count=500):
            # only this conversation's markers: conversation "c}:dedupe:x" has keys under that prefix too
            if _MESSAGE_ID_RE.fullmatch(key[len(marker_prefix) :]):
                keys.append(key)
        # one MULTI/EXEC: all keys share the conversation's hash tag, and a Redis Cluster pipeline
        # runs multi-key DEL only inside a transaction
        with self.client.pipeline(transaction=True) as pipe:
            pipe.exists(keys[0], keys[1])
            for start in range(0, len(keys), 500):
                pipe.delete(*keys[start : start + 500])
            existed = pipe.execute()[0]
        return existed > 0


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis ``MATCH`` glob (``*``, ``?``, ``[``, ``]`` and ``\\`` escaped)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
