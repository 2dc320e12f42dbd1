"""Public site keys: what lets a web page call the chat API without the secret API key in its source.

A site key is public (it sits in the page's ``<script>`` tag, ``data-site-key``) and is configured with
the origins of the sites that embed the widget (setting ``site_keys``, a JSON object
``{"<key>": ["https://shop.example.com", ...]}``). A request carrying ``X-Site-Key: <key>`` instead of
the API key is accepted only when

1. the key is configured (compared in constant time with every configured key);
2. it calls a chat route: ``POST /v1/chat`` (JSON or streamed) or ``GET /v1/conversations/<id>`` (the
   widget's history on reload); nothing else (no DELETE, no webhooks, no admin) — 403 otherwise;
3. its origin is one of the key's origins: the ``Origin`` header, or the server's own origin when
   there is none (browsers omit ``Origin`` on same-origin GETs) — 403 otherwise;
4. its conversation id is ``web-`` followed by 32 lowercase hex digits — 403 otherwise. The widget
   makes it from 128 random bits and keeps it in the visitor's ``localStorage``: the id is the
   visitor's capability for that conversation, and a site-key holder cannot reach conversations of
   other channels (``chatwoot:123``) or guess another visitor's.

What the origin check protects against: another website using your key in its visitors' browsers
(browsers always send ``Origin`` on cross-origin requests, and CORS admits only the configured
origins). It does not stop a script outside a browser, which can send any ``Origin``; such a caller
gets exactly what any visitor of your site gets (chat, and the history of conversations whose random
id it knows). Rate limiting is not part of this module.
"""

from __future__ import annotations

import hmac
import json
import re

from flask import request

from server.errors import ApiError

#: Request header carrying a site key.
HEADER = "X-Site-Key"
#: (method, endpoint) pairs a site key may call.
ROUTES = frozenset({("POST", "chat.chat"), ("GET", "conversations.get_conversation")})
#: Conversation ids usable with a site key: ``web-`` + 128 random bits in hex (what the widget makes).
CONVERSATION_PATTERN = r"^web-[0-9a-f]{32}$"
_KEY_RE = re.compile(r"[A-Za-z0-9_-]{16,128}")
_ORIGIN_RE = re.compile(r"https?://[^/\s]+")
_CONVERSATION_RE = re.compile(CONVERSATION_PATTERN)


def parse_site_keys(raw: str) -> dict[str, tuple[str, ...]]:
    """Parse the ``site_keys`` setting: a JSON object of key → list of origins (empty string: none).

    Raises:
        TypeError: not a JSON object.
        ValueError: not JSON; a key that is not 16-128 characters of ``[A-Za-z0-9_-]``; an
            origin list that is empty or holds something other than ``scheme://host[:port]``.
    """
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e.msg} at column {e.colno})") from e
    if not isinstance(data, dict):
        raise TypeError('expected a JSON object {"<site key>": ["https://shop.example.com", ...]}')
    keys: dict[str, tuple[str, ...]] = {}
    for key, origins in data.items():
        if not _KEY_RE.fullmatch(key):
            raise ValueError(
                f"site key {key[:8]!r}... must be 16-128 characters of letters, digits, '_', '-' "
                "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(18))')"
            )
        if not isinstance(origins, list) or not origins:
            raise ValueError(f"site key {key[:8]!r}...: expected a non-empty list of origins")
        for origin in origins:
            if not isinstance(origin, str) or not _ORIGIN_RE.fullmatch(origin.rstrip("/")):
                raise ValueError(
                    f"site key {key[:8]!r}...: origin {origin!r} must be scheme and host like "
                    "https://shop.example.com (no path, no '*')"
                )
        keys[key] = tuple(o.rstrip("/") for o in origins)
    return keys


def check_site_key(site_keys: dict[str, tuple[str, ...]]) -> None:
    """Accept the current request's ``X-Site-Key`` only within its limits (see the module docstring).

    Raises:
        ApiError: 401 ``unauthorized`` for an unknown key; 403 ``forbidden`` for another route, an
            origin the key does not list, or a conversation id a site key may not use.
    """
    given = request.headers.get(HEADER, "").encode()
    origins: tuple[str, ...] | None = None
    for key, key_origins in site_keys.items():  # every key compared, in constant time each
        if hmac.compare_digest(given, key.encode()):
            origins = key_origins
    if origins is None:
        raise ApiError(401, "unauthorized", f"unknown site key in {HEADER}")
    if (request.method, request.endpoint) not in ROUTES:
        raise ApiError(
            403,
            "forbidden",
            "a site key may only call POST /v1/chat and GET /v1/conversations/<id>; "
            "other routes need the API key",
        )
    origin = (request.headers.get("Origin") or request.host_url).rstrip("/")
    if origin not in origins:
        raise ApiError(403, "forbidden", f"origin {origin[:100]!r} is not allowed for this site key")
    conversation_id = (request.view_args or {}).get("conversation_id")
    if conversation_id is None:
        body = request.get_json(silent=True)
        conversation_id = body.get("conversation_id") if isinstance(body, dict) else None
    if isinstance(conversation_id, str) and not _CONVERSATION_RE.fullmatch(conversation_id):
        raise ApiError(
            403,
            "forbidden",
            "with a site key, conversation_id must be 'web-' followed by 32 lowercase hex digits "
            "(128 random bits, as the widget makes them)",
        )
