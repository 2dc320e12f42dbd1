"""Request helpers shared by the blueprints: parse and validate a JSON body, check the API key, CORS.

A body is read whole (at most ``max_body_bytes``, else 413, chunked bodies included), its nesting
depth is bounded before it is parsed (:data:`MAX_JSON_DEPTH`; a deeper body gets 400, where Python's
parser would recurse until ``RecursionError``), then it is parsed and validated.

It does not define endpoints.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from flask import Response, request
from pydantic import BaseModel
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from server.api.auth import current_principal
from server.errors import ApiError
from server.runtime import runtime

M = TypeVar("M", bound=BaseModel)

#: Deepest nesting of arrays/objects accepted in a request body (our bodies need 3; ``metadata`` is free-form).
MAX_JSON_DEPTH = 32
_OPENERS, _CLOSERS = frozenset(b"[{"), frozenset(b"]}")
_QUOTE, _BACKSLASH = ord('"'), ord("\\")


def json_depth_exceeds(data: bytes, limit: int) -> bool:
    """Whether the JSON text ``data`` nests arrays/objects deeper than ``limit`` (brackets inside strings
    do not count). Linear in ``len(data)``; bodies with at most ``limit`` opening brackets are not scanned."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    depth, in_string, escaped = 0, False, False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == _BACKSLASH:
                escaped = True
            elif byte == _QUOTE:
                in_string = False
        elif byte == _QUOTE:
            in_string = True
        elif byte in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        elif byte in _CLOSERS:
            depth -= 1
    return False


def parse_body(model: type[M]) -> M:
    """Validate the request's JSON body against ``model``.

    Raises:
        ApiError: 415 if the Content-Type is not ``application/json``; 400 if the body is not JSON or
            not a JSON object; 413 (raised by Werkzeug) if it exceeds ``max_body_bytes``.
        pydantic.ValidationError: a field is missing or invalid (422; 413 for an over-long text).
    """
    if request.mimetype != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type must be application/json, got {request.mimetype or 'none'!r}",
        )
    raw = _read_body()
    if json_depth_exceeds(raw, MAX_JSON_DEPTH):
        raise ApiError(
            400, "invalid_json", f"the request body nests arrays/objects deeper than {MAX_JSON_DEPTH} levels"
        )
    try:
        data = json.loads(raw)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        raise ApiError(400, "invalid_json", "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(
            400, "invalid_json", f"the request body must be a JSON object, got {type(data).__name__}"
        )
    settings = runtime().settings
    return model.model_validate(data, context={"max_text_chars": settings.max_text_chars})


def _read_body() -> bytes:
    """The whole request body (cached: the site-key check may have read it already).

    Raises:
        RequestEntityTooLarge: over ``MAX_CONTENT_LENGTH`` (413), also for a chunked body (no
            Content-Length), which ``request.get_data()`` alone would silently cut at the limit: one
            more byte is asked for, and Werkzeug's limited stream refuses it when there is more.
    """
    data = request.get_data(cache=True)
    if request.content_length is None and request.stream.read(1):
        raise RequestEntityTooLarge()
    return data


def peek_json_body() -> Any:
    """The request's JSON object or value if its body is JSON within ``max_body_bytes`` and
    :data:`MAX_JSON_DEPTH`, else ``None``; never raises (for hooks that only look: the rate limit's
    conversation id, the request log). The body stays cached for :func:`parse_body`."""
    if not request.is_json:
        return None
    try:
        raw = request.get_data(cache=True)
    except HTTPException:  # 413: too large to read; the view answers it
        return None
    if json_depth_exceeds(raw, MAX_JSON_DEPTH):
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def check_api_key() -> None:
    """Require a valid API key when keys are required (see ``server/api/auth.py``); no scope check.

    Raises:
        ApiError: 401 when the key is missing, wrong, unknown or revoked.
    """
    if request.method != "OPTIONS":  # CORS preflights carry no credentials
        current_principal()


def add_cors_headers(response: Response) -> Response:
    """Let the configured browser origins (setting ``cors_origins``) call the API, preflights included."""
    origins = runtime().settings.allowed_origins
    origin = request.headers.get("Origin")
    if not origins or not origin:
        return response
    if "*" in origins:
        response.headers["Access-Control-Allow-Origin"] = "*"
    elif origin.rstrip("/") in origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.vary.add("Origin")
    else:
        return response
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = (
            "Content-Type, Authorization, X-API-Key, X-Site-Key, X-Request-ID"
        )
        response.headers["Access-Control-Max-Age"] = "600"
    response.headers["Access-Control-Expose-Headers"] = "Idempotent-Replayed, X-Request-ID"
    return response
