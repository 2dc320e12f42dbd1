"""Rate limits with flask-limiter, counted in the server's Redis so every worker shares them.

Two limits, each a flask-limiter rate string from the settings (empty = off):

* ``rate_limit_per_key``: all requests of one API key (tenant + key id; without a key or with a
  public site key, one client address) to the API blueprints (chat, rasa, conversations), as one application-wide limit;
* ``rate_limit_per_conversation``: messages to one conversation of one tenant, ``POST /v1/chat`` and
  the Rasa webhook counted together (a shared limit, scope ``conversation``); the conversation id is
  read from the JSON body (``conversation_id`` / ``sender``); a body without one is not counted
  (it fails validation anyway).

The counters use limits' ``sliding-window-counter`` strategy (two counters per key and window, no
burst of twice the limit at a window boundary) on the dialog store's own connection pool (same
timeouts and retries), under ``<redis_prefix>:ratelimit``; their two keys share a Cluster hash tag.
Over a limit: 429 ``too_many_requests`` in the project's JSON error body, with ``Retry-After``
(whole seconds until the window lets a request through). If Redis is down the check fails like any
other Redis call: 503, never an unlimited pass. Health, metrics and OpenAPI endpoints, and any
blueprint not listed above, are not limited.

It does not authenticate (``server/api/auth.py``); the per-key limit asks it who is calling.
"""

from __future__ import annotations

import math
import time

from flask import Flask, Response, g, request
from flask_limiter import ApplicationLimit, Limiter, RequestLimit

from server.api.auth import SITE_KEY_ID, current_principal
from server.api.guards import peek_json_body
from server.api.schemas import conversation_id_problem
from server.runtime import Runtime
from server.store.cluster import is_cluster_url

#: Blueprints whose endpoints are rate limited (their endpoints require an API key).
LIMITED_BLUEPRINTS = frozenset({"chat", "rasa", "conversations"})
_UNLIMITED_ENDPOINTS = frozenset({"rasa.health"})


def _limited() -> bool:
    return (
        request.blueprint in LIMITED_BLUEPRINTS
        and request.endpoint not in _UNLIMITED_ENDPOINTS
        and request.method != "OPTIONS"  # CORS preflights carry no key
    )


def key_identity() -> str:
    """The per-key limit's key: ``key:<tenant>:<key id>``, or ``addr:<client address>`` without auth."""
    principal = current_principal()
    if principal.key_id in ("anonymous", SITE_KEY_ID):  # no key, or a public key shared by all visitors
        return f"addr:{request.remote_addr}"
    return f"key:{principal.tenant}:{principal.key_id}"


def _body_conversation_id() -> str | None:
    body = peek_json_body()
    if not isinstance(body, dict):
        return None
    value = body.get("conversation_id", body.get("sender"))
    # only a valid id becomes a Redis key (no lone surrogate, no control character); an invalid one
    # is not counted: the request is refused with 422 anyway
    return value if isinstance(value, str) and conversation_id_problem(value) is None else None


def conversation_identity() -> str:
    """The per-conversation limit's key: ``conv:<tenant>:<conversation id>``."""
    return f"conv:{current_principal().tenant}:{_body_conversation_id()}"


def _note_retry_after(limit: RequestLimit) -> None:
    g.retry_after = max(1, math.ceil(limit.reset_at - time.time()))


def _add_retry_after(response: Response) -> Response:
    if response.status_code == 429 and "retry_after" in g:
        response.headers["Retry-After"] = str(g.retry_after)
    return response


def _storage(rt: Runtime) -> dict:
    """limits' storage on the server's Redis: the store's own connection pool (same timeouts and
    retries); on a Redis Cluster, limits' cluster storage on the same nodes."""
    settings = rt.settings
    options: dict = {"key_prefix": f"{settings.redis_prefix}:ratelimit"}
    if is_cluster_url(settings.redis_url):
        options["socket_timeout"] = settings.redis_socket_timeout
        return {"storage_uri": settings.redis_url, "storage_options": options}
    # the URI only picks limits' Redis storage class; connections come from the pool
    options["connection_pool"] = rt.store.client.connection_pool
    return {"storage_uri": "redis://", "storage_options": options}


def init_app(app: Flask) -> Limiter | None:
    """Install the configured rate limits on ``app`` (``None`` when both settings are empty)."""
    rt: Runtime = app.extensions["assistant"]
    settings = rt.settings
    if not settings.rate_limit_per_key and not settings.rate_limit_per_conversation:
        return None
    per_key = [
        ApplicationLimit(
            limit_provider=settings.rate_limit_per_key,
            key_function=key_identity,
            exempt_when=lambda: not _limited(),
            error_message=f"too many requests with this API key (limit {settings.rate_limit_per_key}); "
            "see Retry-After",
        )
    ]
    limiter = Limiter(
        key_func=key_identity,
        application_limits=per_key if settings.rate_limit_per_key else [],
        strategy="sliding-window-counter",
        **_storage(rt),
        headers_enabled=False,  # Retry-After is set on 429s only, without another Redis round trip
        swallow_errors=False,
        on_breach=_note_retry_after,
        key_prefix="",
    )
    limiter.init_app(app)
    if settings.rate_limit_per_conversation:
        per_conversation = limiter.shared_limit(
            settings.rate_limit_per_conversation,
            scope="conversation",
            key_func=conversation_identity,
            exempt_when=lambda: not _limited() or _body_conversation_id() is None,
            error_message=lambda: (
                f"too many messages to this conversation (limit {settings.rate_limit_per_conversation}); "
                "see Retry-After"
            ),
        )
        for name in ("chat", "rasa"):
            per_conversation(app.blueprints[name])
    app.after_request(_add_retry_after)
    app.extensions["assistant_limiter"] = limiter
    return limiter
