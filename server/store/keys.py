"""Per-tenant API keys in Redis: created, listed, revoked and looked up by their SHA-256 digest.

A key is ``ak_<key_id>_<secret>``: ``key_id`` is 8 random hex characters that name the key in
listings, logs and metrics; ``secret`` is 32 random bytes (``secrets.token_urlsafe(32)``). Only the
SHA-256 digest of the whole key is stored, never the key. A fast unsalted hash is the right tool
here (as for GitHub's or Stripe's tokens): the key is 256 bits of randomness, so no dictionary or
brute-force search can invert its digest, and a slow password hash (bcrypt, argon2) would cost
tens of milliseconds on every request for no gain. The key itself is shown once, at creation.

Redis layout (``P`` = the ``redis_prefix`` setting; the ``{apikeys}`` hash tag keeps every key
record in one Cluster slot, so create and revoke are one ``MULTI/EXEC``):

* ``P:{apikeys}:digest:<sha256 hex>`` JSON record ``{key_id, tenant, scopes, name, created_at}``:
  what a request's key is looked up by (one ``GET``);
* ``P:{apikeys}:index`` hash ``key_id`` → the same record plus its ``digest``: listing and revocation.

Every request looks its key up in Redis, with no per-process cache: a revoked key is refused by
every worker and every machine from the next request on, at the cost of one ``GET`` (about 0.1 ms
on a local Redis). The look-up is by digest, so no secret is ever compared byte by byte: a client
controls the key it sends, not the digest that Redis matches, so response times say nothing about
how close a guess was (the shared ``api_key`` setting is compared with ``hmac.compare_digest``).

It does not decide what a scope allows (``server/api/auth.py``) and has no HTTP endpoints.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from dataclasses import asdict, dataclass

import redis

from assistant.errors import AssistantError
from server.store.tenants import check_tenant

#: What a key may do. ``admin`` implies every other scope and also allows ``/metrics``.
SCOPES = ("chat", "conversations:read", "conversations:erase", "admin")
_KEY_RE = re.compile(r"ak_([0-9a-f]{8})_[A-Za-z0-9_-]{43}")


class ApiKeyError(AssistantError):
    """A bad tenant, scope or key id given to :class:`KeyStore` (the message says what is valid)."""


@dataclass(frozen=True)
class ApiKey:
    """A stored API key's record (never the key itself).

    Attributes:
        key_id: 8 hex characters, the public name of the key.
        tenant: the tenant whose conversations the key reaches (:data:`TENANT_RULE`).
        scopes: a subset of :data:`SCOPES`.
        name: a free label given at creation (e.g. "helpdesk prod").
        created_at: Unix seconds.
    """

    key_id: str
    tenant: str
    scopes: tuple[str, ...]
    name: str
    created_at: float

    def allows(self, scope: str) -> bool:
        """Whether this key may act in ``scope`` (``admin`` allows everything)."""
        return scope in self.scopes or "admin" in self.scopes

    def to_json(self) -> dict:
        return {**asdict(self), "scopes": list(self.scopes)}

    @classmethod
    def from_json(cls, obj: dict) -> ApiKey:
        return cls(obj["key_id"], obj["tenant"], tuple(obj["scopes"]), obj["name"], obj["created_at"])


def digest(key: str) -> str:
    """SHA-256 hex digest of a key (what is stored and looked up)."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_id_of(key: str) -> str | None:
    """The public id of a well-formed key (``ak_<key_id>_...``), or ``None``; the secret part is not
    looked at (for logging which key a refused request presented)."""
    m = _KEY_RE.fullmatch(key)
    return m.group(1) if m else None


def check_scopes(scopes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Return the scopes without duplicates. Raises :class:`ApiKeyError` for an unknown or empty list."""
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ApiKeyError(f"scopes {list(scopes)!r} are invalid; expected one or more of {list(SCOPES)}")
    return tuple(dict.fromkeys(scopes))


class KeyStore:
    """Create, list, revoke and look up API keys in Redis (see the module docstring for the layout).

    Args:
        client: a Redis client (``server.store.history.connect``).
        prefix: the ``redis_prefix`` setting.
    """

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def _digest_key(self, hexdigest: str) -> str:
        return f"{self.prefix}:{{apikeys}}:digest:{hexdigest}"

    @property
    def _index_key(self) -> str:
        return f"{self.prefix}:{{apikeys}}:index"

    def create(self, tenant: str, scopes: list[str] | tuple[str, ...], name: str = "") -> tuple[str, ApiKey]:
        """Create a key; returns ``(the key, its record)``. The key is not stored and cannot be shown again.

        Raises:
            ApiKeyError: bad tenant or scopes.
            redis.RedisError: Redis unreachable.
        """
        record = ApiKey(
            key_id=secrets.token_hex(4),
            tenant=check_tenant(tenant),
            scopes=check_scopes(scopes),
            name=name,
            created_at=round(time.time(), 3),
        )
        key = f"ak_{record.key_id}_{secrets.token_urlsafe(32)}"
        hexdigest = digest(key)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(self._index_key, record.key_id, json.dumps({**record.to_json(), "digest": hexdigest}))
            pipe.set(self._digest_key(hexdigest), json.dumps(record.to_json()))
            created, _ = pipe.execute()
        if not created:  # a key_id collision (1 in 4e9 per existing key): undo and draw again
            self.client.delete(self._digest_key(hexdigest))
            return self.create(tenant, scopes, name)
        return key, record

    def list(self, tenant: str | None = None) -> list[ApiKey]:
        """Every key's record (of ``tenant`` only, when given), oldest first."""
        records = [ApiKey.from_json(json.loads(v)) for v in self.client.hgetall(self._index_key).values()]
        return sorted(
            (r for r in records if tenant is None or r.tenant == tenant), key=lambda r: r.created_at
        )

    def revoke(self, key_id: str) -> ApiKey:
        """Delete a key: every worker refuses it from the next request on.

        Raises:
            ApiKeyError: no key has this id.
        """
        raw = self.client.hget(self._index_key, key_id)
        if raw is None:
            raise ApiKeyError(f"no API key has id {key_id!r}; 'assistant keys list' shows the ids")
        obj = json.loads(raw)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self._digest_key(obj["digest"]))
            pipe.hdel(self._index_key, key_id)
            pipe.execute()
        return ApiKey.from_json(obj)

    def lookup(self, key: str) -> ApiKey | None:
        """The record of a presented key, or ``None`` if it is malformed, unknown or revoked.

        Raises:
            redis.RedisError: Redis unreachable (the caller answers 503, never "allowed").
        """
        if not _KEY_RE.fullmatch(key):
            return None
        raw = self.client.get(self._digest_key(digest(key)))
        return None if raw is None else ApiKey.from_json(json.loads(raw))
