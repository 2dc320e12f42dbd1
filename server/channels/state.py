"""Channel state in Redis: dedupe of deliveries, pending customer messages, who owns a conversation,
the record of a turn in progress, and the failure log.

Every per-conversation key sits in the conversation's hash-tag slot of the dialog store
(``P:{conv:<id>}:ch:...``, ``P`` = the ``redis_prefix`` setting), so Redis Cluster keeps them with
its history; the keys are:

* ``ch:seen:<kind>:<id>`` (string, ``dedupe_ttl_seconds``): a delivery / message / event id already
  accepted. Set together with the pending message by one Lua script: a redelivery is a duplicate
  exactly when the first delivery was queued.
* ``ch:seq`` (counter) and ``ch:pending`` (list of JSON messages ``{seq, at, id, text, ...}``): the
  customer messages received and not yet answered; ``at`` is Redis's clock, so burst timing does
  not depend on the clocks of server and worker machines.
* ``ch:state`` (hash): ``owner`` (``bot`` | ``human``), ``order_at`` (the helpdesk's order value — a
  Chatwoot message id, a Sunshine event time in ms — of the evidence that set it), ``last_seen``.
  :meth:`ChannelState.observe` applies evidence atomically and only when it is newer, so a late
  redelivery cannot undo a handoff or a hand-back.
* ``ch:turn`` (hash): the turn being answered (its messages, text, turn id) and each side effect
  done for it (``step:<name>`` = ``sending`` then ``done:<result>``), so a retried or restarted job
  resumes instead of repeating: a reply marked ``sending`` but not ``done`` is never posted again.
* ``ch:lock``: serialises the jobs of one conversation.

Global keys: ``P:channels:failures`` (list of JSON failure records, newest first, 1000 kept) and
``P:channels:counters`` (hash of event counters). It holds no HTTP or helpdesk logic.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis

from server.store.history import DialogStore

FAILURES_KEPT = 1000
_TURN_TTL = 86400

# KEYS: seen keys (1..n-3), seq, pending, state; ARGV: dedupe ttl, item json, keys ttl, number of seen keys
_ACCEPT = """
local n = tonumber(ARGV[4])
for i = 1, n do
  if redis.call('EXISTS', KEYS[i]) == 1 then return 0 end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local seq = redis.call('INCR', KEYS[n + 1])
redis.call('EXPIRE', KEYS[n + 1], ARGV[3])
for i = 1, n do
  redis.call('SET', KEYS[i], seq, 'EX', ARGV[1])
end
local item = cjson.decode(ARGV[2])
item['seq'] = seq
item['at'] = now
redis.call('RPUSH', KEYS[n + 2], cjson.encode(item))
redis.call('EXPIRE', KEYS[n + 2], ARGV[3])
return seq
"""

# KEYS: seen keys..., pending; ARGV: seq, number of seen keys
_REJECT = """
local n = tonumber(ARGV[2])
local pending = KEYS[n + 1]
for _, raw in ipairs(redis.call('LRANGE', pending, 0, -1)) do
  if tostring(cjson.decode(raw)['seq']) == ARGV[1] then redis.call('LREM', pending, 1, raw) end
end
for i = 1, n do redis.call('DEL', KEYS[i]) end
return 1
"""

# KEYS: state; ARGV: order ('' = last_seen), target ('' | 'bot' | 'human'), mode, ttl. Modes: 'newer' sets
# the owner if the evidence is newer than order_at; 'force' sets it regardless; 'mark' only raises order_at
# while the owner is already the target.
_OBSERVE = """
local owner = redis.call('HGET', KEYS[1], 'owner') or 'bot'
local order_at = tonumber(redis.call('HGET', KEYS[1], 'order_at') or '-1')
local last = tonumber(redis.call('HGET', KEYS[1], 'last_seen') or '-1')
local order = last
if ARGV[1] ~= '' then order = tonumber(ARGV[1]) end
if order > last then redis.call('HSET', KEYS[1], 'last_seen', ARGV[1]) end
if ARGV[2] ~= '' then
  if ARGV[3] == 'force' then
    owner = ARGV[2]
    redis.call('HSET', KEYS[1], 'owner', owner, 'order_at', tostring(math.max(order, order_at)))
  elseif ARGV[3] == 'mark' then
    if owner == ARGV[2] and order > order_at then redis.call('HSET', KEYS[1], 'order_at', tostring(order)) end
  elseif order > order_at then
    owner = ARGV[2]
    redis.call('HSET', KEYS[1], 'owner', owner, 'order_at', tostring(order))
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return owner
"""

# KEYS: pending, turn; ARGV: seqs json (the turn's messages)
_FINISH = """
local done = {}
for _, s in ipairs(cjson.decode(ARGV[1])) do done[tostring(s)] = true end
for _, raw in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if done[tostring(cjson.decode(raw)['seq'])] then redis.call('LREM', KEYS[1], 1, raw) end
end
redis.call('DEL', KEYS[2])
return 1
"""


@dataclass(frozen=True)
class Pending:
    """A customer message waiting to be answered.

    Attributes:
        seq: its arrival number in the conversation (1, 2, ...).
        at: when it was accepted, Unix seconds on Redis's clock.
        message_id: the helpdesk's id of the message.
        text: the customer's text.
        order: the helpdesk's order value of the message (Chatwoot: message id; Sunshine: event ms).
        target: what the adapter needs to answer in the helpdesk (ids, never secrets).
    """

    seq: int
    at: float
    message_id: str
    text: str
    order: float
    target: dict[str, Any]

    @classmethod
    def from_json(cls, raw: bytes | str) -> Pending:
        obj = json.loads(raw)
        return cls(
            int(obj["seq"]), float(obj["at"]), str(obj["id"]), obj["text"], float(obj["order"]), obj["target"]
        )


class ChannelState:
    """Reads and writes the channel keys of conversations (see the module docstring).

    Args:
        store: the dialog store (its client, prefix, TTLs and key base are reused).
    """

    def __init__(self, store: DialogStore) -> None:
        self.store = store
        self.client: redis.Redis = store.client
        self.prefix = store.prefix
        self._accept = self.client.register_script(_ACCEPT)
        self._reject = self.client.register_script(_REJECT)
        self._observe = self.client.register_script(_OBSERVE)
        self._finish = self.client.register_script(_FINISH)

    # ------------------------------------------------------------------ keys
    def key(self, conversation_id: str, name: str) -> str:
        """``P:{conv:<id>}:ch:<name>``."""
        return f"{self.prefix}:{{conv:{conversation_id}}}:ch:{name}"

    @property
    def failures_key(self) -> str:
        return f"{self.prefix}:channels:failures"

    @property
    def counters_key(self) -> str:
        return f"{self.prefix}:channels:counters"

    def _seen_keys(self, conversation_id: str, seen: dict[str, str]) -> list[str]:
        return [self.key(conversation_id, f"seen:{kind}:{value}") for kind, value in seen.items() if value]

    # ------------------------------------------------------------ messages in
    def accept(self, conversation_id: str, seen: dict[str, str], item: dict[str, Any]) -> int:
        """Queue a customer message unless any of its ids was seen; one atomic script.

        Args:
            conversation_id: the store's conversation id.
            seen: dedupe ids by kind, e.g. ``{"delivery": "<X-Chatwoot-Delivery>", "msg": "123"}``
                (empty values are skipped).
            item: ``{id, text, order, target}`` of the message.

        Returns:
            the message's ``seq`` (>= 1), or 0 when it is a duplicate (nothing written).
        """
        keys = self._seen_keys(conversation_id, seen)
        keys += [self.key(conversation_id, "seq"), self.key(conversation_id, "pending")]
        args = [self.store.dedupe_ttl_seconds, json.dumps(item), self.store.ttl_seconds, len(keys) - 2]
        return int(self._accept(keys=keys, args=args))

    def reject(self, conversation_id: str, seen: dict[str, str], seq: int) -> None:
        """Undo :meth:`accept` (the job could not be queued), so the helpdesk's retry is accepted."""
        keys = self._seen_keys(conversation_id, seen) + [self.key(conversation_id, "pending")]
        self._reject(keys=keys, args=[seq, len(keys) - 1])

    def seen_once(self, conversation_id: str, kind: str, value: str) -> bool:
        """Mark an id of a non-message event seen; ``False`` if it was already (a redelivery)."""
        key = self.key(conversation_id, f"seen:{kind}:{value}")
        return bool(self.client.set(key, "1", nx=True, ex=self.store.dedupe_ttl_seconds))

    def pending(self, conversation_id: str) -> list[Pending]:
        """The messages waiting to be answered, in arrival order."""
        raw = self.client.lrange(self.key(conversation_id, "pending"), 0, -1)
        return sorted((Pending.from_json(r) for r in raw), key=lambda p: p.seq)

    def drop(self, conversation_id: str, seqs: list[int]) -> None:
        """Forget pending messages (answered, or silenced because a human owns the conversation)."""
        self._finish(
            keys=[self.key(conversation_id, "pending"), self.key(conversation_id, "no-turn")],
            args=[json.dumps(seqs)],
        )

    def now(self) -> float:
        """Redis's clock, Unix seconds (the clock pending messages were stamped with)."""
        seconds, micros = self.client.time()
        return seconds + micros / 1e6

    # ---------------------------------------------------------------- owner
    def observe(
        self,
        conversation_id: str,
        order: float | None,
        target: str = "",
        *,
        force: bool = False,
        mark: bool = False,
    ) -> str:
        """Record evidence about who owns the conversation; returns the owner after it.

        Args:
            order: the helpdesk's order value of the evidence (``None``: the newest seen so far).
            target: ``"bot"``, ``"human"``, or ``""`` (only note ``order`` as seen).
            force: apply even if older than the evidence that set the current owner (explicit
                status changes, our own handoff).
            mark: do not change the owner; if it is ``target``, move the evidence mark up to ``order``
                (the handoff reply's id: later messages only count as a hand-back).
        """
        mode = "force" if force else "mark" if mark else "newer"
        args = ["" if order is None else repr(float(order)), target, mode]
        return self._observe(
            keys=[self.key(conversation_id, "state")], args=[*args, self.store.ttl_seconds]
        ).decode()

    def owner(self, conversation_id: str) -> str:
        """``bot`` (default) or ``human``."""
        value = self.client.hget(self.key(conversation_id, "state"), "owner")
        return value.decode() if value else "bot"

    def mark_store_status(self, conversation_id: str, status: str) -> None:
        """Set the dialog store's ``status`` (``bot`` | ``handoff``) so ``GET /v1/conversations`` shows it."""
        key = self.store.state_key(conversation_id)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"status": status, "updated_at": repr(time.time())})
            pipe.expire(key, self.store.ttl_seconds)
            pipe.execute()

    # ----------------------------------------------------------------- turns
    def lock(self, conversation_id: str, timeout: float) -> redis.lock.Lock:
        """The channel lock of a conversation (not blocking: callers retry the job later)."""
        return self.client.lock(self.key(conversation_id, "lock"), timeout=timeout, blocking=False)

    def load_turn(self, conversation_id: str) -> dict[str, str] | None:
        """The turn record in progress (str → str), or ``None``."""
        raw = self.client.hgetall(self.key(conversation_id, "turn"))
        return {k.decode(): v.decode() for k, v in raw.items()} or None

    def start_turn(self, conversation_id: str, record: dict[str, str]) -> dict[str, str]:
        """Write a new turn record (fields: ``turn_id``, ``text``, ``seqs``, ``target``, ...)."""
        key = self.key(conversation_id, "turn")
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=record)
            pipe.expire(key, _TURN_TTL)
            pipe.execute()
        return dict(record)

    def set_turn(self, conversation_id: str, field: str, value: str) -> None:
        """Record one field of the turn in progress (a step's progress)."""
        self.client.hset(self.key(conversation_id, "turn"), field, value)

    def bump_turn(self, conversation_id: str, field: str) -> int:
        """Increment a counter of the turn record (``attempts``, ``runs``); returns the new value."""
        return int(self.client.hincrby(self.key(conversation_id, "turn"), field, 1))

    def finish_turn(self, conversation_id: str, seqs: list[int]) -> None:
        """Remove the turn's messages from the pending list and its record, in one script."""
        self._finish(
            keys=[self.key(conversation_id, "pending"), self.key(conversation_id, "turn")],
            args=[json.dumps(seqs)],
        )

    # ------------------------------------------------------- failures, counts
    def count(self, name: str, by: int = 1) -> None:
        """Add to a channel counter (``assistant channels status`` shows them)."""
        self.client.hincrby(self.counters_key, name, by)

    def counters(self) -> dict[str, int]:
        """Every counter, name → value."""
        return {k.decode(): int(v) for k, v in self.client.hgetall(self.counters_key).items()}

    def record_failure(self, record: dict[str, Any]) -> None:
        """Prepend a failure record (JSON, ids and error text, never customer text) and count it."""
        record = {"at": time.time(), **record}
        with self.client.pipeline(transaction=True) as pipe:
            pipe.lpush(self.failures_key, json.dumps(record, ensure_ascii=False))
            pipe.ltrim(self.failures_key, 0, FAILURES_KEPT - 1)
            pipe.hincrby(self.counters_key, "failed_turns", 1)
            pipe.execute()

    def failures(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest failure records, newest first."""
        return [json.loads(r) for r in self.client.lrange(self.failures_key, 0, max(0, limit - 1))]
