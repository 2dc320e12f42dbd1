"""Who is calling, and may they: API keys → a :class:`Principal` (tenant, scopes) → 401 / 403.

A request presents a key as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``, or a public site
key as ``X-Site-Key`` (that header, when present, decides). The key is, in order:

1. the shared ``api_key`` setting (compared with ``hmac.compare_digest``): tenant ``default``, scope
   ``admin`` — the operator's key, and what single-tenant installs use;
2. a tenant key created with ``assistant keys create`` (``server/store/keys.py``), looked up in
   Redis on every request, so a revoked key is refused by every worker at once;
3. a public site key (``X-Site-Key``, ``server/site_keys.py``: the web widget): checked there for
   its route, origin and conversation id (401/403), then tenant ``default`` with scopes ``chat`` and
   ``conversations:read``;
4. no key at all: allowed only in development/testing with no ``api_key`` set (tenant ``default``,
   every scope), otherwise 401.

A wrong, unknown or revoked key is 401 ``unauthorized``; a valid key without the endpoint's scope
is 403 ``forbidden`` (chat: ``chat``; ``GET /v1/conversations``: ``conversations:read``;
``DELETE``: ``conversations:erase``; ``/metrics``: ``admin``; ``admin`` allows everything).

Tenants are kept apart in Redis, not by checks: a tenant's conversations live under
``<redis_prefix>:t:<tenant>:{conv:<id>}:...`` (the ``default`` tenant keeps the plain
``<redis_prefix>:{conv:<id>}:...`` keys of single-tenant installs), so a key of tenant A asking for
B's conversation id finds nothing there and gets 404 — and two tenants may use the same ids.
:func:`tenant_runtime` hands the blueprints a runtime whose store is the caller's tenant's.

It does not define endpoints and does not manage keys (``server/cli/keys.py``).
"""

from __future__ import annotations

import copy
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, current_app, g, request

from server import site_keys
from server.errors import ApiError
from server.runtime import Runtime, runtime
from server.store.keys import SCOPES, KeyStore, key_id_of
from server.store.tenants import DEFAULT_TENANT, scoped_store

_BEARER = "bearer "
#: ``Principal.key_id`` of requests authenticated by a public site key (one per site, many visitors).
SITE_KEY_ID = "site-key"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller.

    Attributes:
        tenant: whose conversations the request reaches.
        key_id: the key's id, ``"api_key"`` for the shared setting, ``"anonymous"`` without auth.
        scopes: what the key may do (see ``server.store.keys.SCOPES``).
    """

    tenant: str
    key_id: str
    scopes: tuple[str, ...]

    def allows(self, scope: str) -> bool:
        """Whether the caller may act in ``scope`` (``admin`` allows everything)."""
        return scope in self.scopes or "admin" in self.scopes


def init_app(app: Flask) -> None:
    """Attach the :class:`KeyStore` (on the dialog store's Redis) as ``app.extensions["assistant_keys"]``."""
    rt: Runtime = app.extensions["assistant"]
    app.extensions["assistant_keys"] = KeyStore(rt.store.client, rt.settings.redis_prefix)


def presented_key() -> str:
    """The key the request carries (``Authorization: Bearer`` wins over ``X-API-Key``), or ``""``."""
    auth = request.headers.get("Authorization", "")
    if auth[: len(_BEARER)].lower() == _BEARER:
        return auth[len(_BEARER) :].strip()
    return request.headers.get("X-API-Key", "").strip()


def current_principal() -> Principal:
    """Authenticate the request once (cached on ``flask.g``).

    Raises:
        ApiError: 401 when a key is required and missing, or the key is wrong, unknown or revoked.
        redis.RedisError: the key store is unreachable (503; a key is never accepted unchecked).
    """
    if "principal" in g:
        return g.principal
    settings = runtime().settings
    given = presented_key()
    principal = None
    if request.headers.get(site_keys.HEADER):  # a site key header is judged as such, key or not
        site_keys.check_site_key(settings.site_key_origins)
        principal = Principal(DEFAULT_TENANT, SITE_KEY_ID, ("chat", "conversations:read"))
    elif given:
        if settings.api_key and hmac.compare_digest(given.encode(), settings.api_key.encode()):
            principal = Principal(DEFAULT_TENANT, "api_key", ("admin",))
        else:
            record = current_app.extensions["assistant_keys"].lookup(given)
            if record is not None:
                principal = Principal(record.tenant, record.key_id, record.scopes)
        if principal is None:
            g.rejected_key_id = key_id_of(given)  # the public id only, for the request log
            raise ApiError(401, "unauthorized", "wrong, unknown or revoked API key")
    elif not settings.api_key and settings.env != "production":
        principal = Principal(DEFAULT_TENANT, "anonymous", SCOPES)
    else:
        raise ApiError(
            401, "unauthorized", "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key'"
        )
    g.principal = principal
    return principal


def authorize(scope: str) -> Principal:
    """Authenticate the request and require ``scope``.

    Raises:
        ApiError: 401 (see :func:`current_principal`); 403 when the key lacks ``scope``.
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; expected one of {list(SCOPES)}")
    principal = current_principal()
    if not principal.allows(scope):
        raise ApiError(
            403,
            "forbidden",
            f"this API key (id {principal.key_id}) lacks the scope {scope!r} "
            f"(it has {', '.join(principal.scopes)})",
        )
    return principal


def require(scope: str) -> Callable[[], None]:
    """A ``before_request`` hook calling :func:`authorize` (CORS preflights pass: they carry no key)."""

    def hook() -> None:
        if request.method != "OPTIONS":
            authorize(scope)

    return hook


def tenant_runtime() -> Runtime:
    """The app's runtime with the store of the authenticated caller's tenant (for ``run_turn``)."""
    rt = runtime()
    tenant = current_principal().tenant
    if tenant == DEFAULT_TENANT:
        return rt
    view = copy.copy(rt)
    view.store = scoped_store(rt.store, tenant)
    return view
