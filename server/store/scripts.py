"""The Lua scripts that make every write of a chat turn idempotent and fenced by the turn's claim.

Why scripts: redis-py re-sends a command after a timeout or a dropped connection (the pool's
``Retry``), and a command sent to a frozen or overloaded Redis stays queued in its socket and runs
later, even after the client gave up. A plain ``MULTI/EXEC`` applied that way stores a turn twice.
Each script here is a single atomic step that does the right thing however often, and however late,
it runs:

* Every attempt to answer a message has a random ``token``. The message's marker key
  (``P:{conv:<id>}:dedupe:<message_id>``) holds ``pending:<token>`` while that attempt owns the
  message, ``aborted:<token>`` once it gave up, and the JSON answer once its turn is stored.
* :data:`CLAIM` takes the marker (``SET``-if-free with a TTL); a copy of the same claim run again is
  a no-op. A ``pending`` marker whose owner is neither holding the lock nor queued for it is taken
  over (its owner failed).
* :data:`ACQUIRE` takes the conversation's lock in first-come-first-served order (a sorted set of
  waiters, scored by Redis's own clock at claim time), only while the marker is still
  ``pending:<token>``.
* :data:`COMMIT` stores the turn (``RPUSH``, ``LTRIM``, ``EXPIRE``, ``HSET``, ``HINCRBY``, the
  answer) and releases the lock, only if the marker is still ``pending:<token>``; a re-sent or late
  copy finds the answer there and does nothing.
* :data:`ABANDON` ends an attempt that will not commit: releases its lock and queue place and turns
  ``pending:<token>`` (or a missing marker) into ``aborted:<token>``, which fences every copy of the
  attempt's claim, acquire and commit still queued in Redis. It reports ``answered`` instead when
  the commit had already been applied, so it is also how an unknown outcome is resolved.

Every script touches only keys of one conversation (one hash tag), so it runs on Redis Cluster.
The first write of each script comes after its reads, so an out-of-memory refusal leaves nothing
half-written (Redis checks memory before a script's first write).

This module holds the sources only; ``server/store/history.py`` registers and calls them.
"""

from __future__ import annotations

#: Shared Lua helpers: Redis's clock in milliseconds, and dropping waiters that gave up long ago.
_PRELUDE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function purge_waiters(queue, stale_ms)
  redis.call('ZREMRANGEBYSCORE', queue, '-inf', now_ms() - stale_ms)
end
"""

#: KEYS: marker, lock, queue. ARGV: token, claim_ms, stale_ms.
#: Returns ``{'claimed', ''}``, ``{'answered', answer_json}``, ``{'busy', owner_token}`` or
#: ``{'aborted', ''}`` (a late copy of a claim whose attempt already gave up).
CLAIM = (
    _PRELUDE
    + """
local marker, lock, queue = KEYS[1], KEYS[2], KEYS[3]
local token, claim_ms, stale_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local value = redis.call('GET', marker)
if value then
  if value == 'pending:' .. token then return {'claimed', ''} end
  if value == 'aborted:' .. token then return {'aborted', ''} end
  if value == 'pending' then return {'busy', ''} end
  if string.sub(value, 1, 8) == 'pending:' then
    local owner = string.sub(value, 9)
    purge_waiters(queue, stale_ms)
    if redis.call('GET', lock) == owner or redis.call('ZSCORE', queue, owner) then
      return {'busy', owner}
    end
  elseif string.sub(value, 1, 8) ~= 'aborted:' then
    return {'answered', value}
  end
end
redis.call('SET', marker, 'pending:' .. token, 'PX', claim_ms)
redis.call('ZADD', queue, now_ms(), token)
redis.call('PEXPIRE', queue, claim_ms)
return {'claimed', ''}
"""
)

#: KEYS: lock, queue, marker. ARGV: token, lock_ms, stale_ms.
#: Returns 1 (the lock is held by ``token``), 0 (wait: held by another, or an earlier waiter is
#: first) or -1 (the claim is gone: aborted, expired or erased; stop).
ACQUIRE = (
    _PRELUDE
    + """
local lock, queue, marker = KEYS[1], KEYS[2], KEYS[3]
local token, lock_ms, stale_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if redis.call('GET', marker) ~= 'pending:' .. token then
  redis.call('ZREM', queue, token)
  return -1
end
local holder = redis.call('GET', lock)
if holder == token then
  redis.call('PEXPIRE', lock, lock_ms)
  return 1
end
purge_waiters(queue, stale_ms)
if not redis.call('ZSCORE', queue, token) then
  redis.call('ZADD', queue, now_ms(), token)
  redis.call('PEXPIRE', queue, stale_ms)
end
if not holder then
  local first = redis.call('ZRANGE', queue, 0, 0)[1]
  if first == token then
    redis.call('SET', lock, token, 'PX', lock_ms)
    redis.call('ZREM', queue, token)
    return 1
  end
end
return 0
"""
)

#: KEYS: history, state, marker, lock, queue. ARGV: token, answer_json, answer_ttl_s, max_turns,
#: ttl_s, status, updated_at, then one JSON string per message of the turn.
#: Returns ``{1, held}`` (stored; ``held`` 1 if the lock was still this attempt's) or
#: ``{0, marker_value}`` (not applied: the marker is not ``pending:<token>``; it holds this
#: attempt's own answer when a copy of this call was applied before).
COMMIT = """
local history, state, marker, lock, queue = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local token = ARGV[1]
local value = redis.call('GET', marker)
if value ~= 'pending:' .. token then
  return {0, value or ''}
end
for i = 8, #ARGV do
  redis.call('RPUSH', history, ARGV[i])
end
redis.call('LTRIM', history, -tonumber(ARGV[4]), -1)
redis.call('EXPIRE', history, ARGV[5])
redis.call('HSET', state, 'status', ARGV[6], 'updated_at', ARGV[7])
redis.call('HINCRBY', state, 'turns', #ARGV - 7)
redis.call('EXPIRE', state, ARGV[5])
redis.call('SET', marker, ARGV[2], 'EX', ARGV[3])
local held = 0
if redis.call('GET', lock) == token then
  redis.call('DEL', lock)
  held = 1
end
redis.call('ZREM', queue, token)
return {1, held}
"""

#: KEYS: marker, lock, queue. ARGV: token, tombstone_ms.
#: Returns ``{'aborted', ''}`` (nothing of the attempt is or ever will be stored),
#: ``{'answered', answer_json}`` (the message has an answer: this attempt's own when its commit was
#: applied, else another attempt's) or ``{'other', ''}`` (another attempt owns the message now).
ABANDON = """
local marker, lock, queue = KEYS[1], KEYS[2], KEYS[3]
local token, tombstone_ms = ARGV[1], tonumber(ARGV[2])
if redis.call('GET', lock) == token then redis.call('DEL', lock) end
redis.call('ZREM', queue, token)
local value = redis.call('GET', marker)
if (not value) or value == 'pending:' .. token then
  redis.call('SET', marker, 'aborted:' .. token, 'PX', tombstone_ms)
  return {'aborted', ''}
end
if value == 'aborted:' .. token then return {'aborted', ''} end
if value == 'pending' or string.sub(value, 1, 8) == 'pending:' or string.sub(value, 1, 8) == 'aborted:' then
  return {'other', ''}
end
return {'answered', value}
"""
