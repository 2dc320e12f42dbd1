"""Request helpers shared by the blueprints: parse and validate a JSON body, check the API key, CORS.

It does not define endpoints.
"""

from __future__ import annotations

import hmac
from typing import TypeVar

from flask import Response, request
from pydantic import BaseModel

from server import site_keys
from server.errors import ApiError
from server.runtime import runtime

M = TypeVar("M", bound=BaseModel)


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
    data = request.get_json(silent=True)
    if data is None:
        request.get_data()  # raises 413 for an oversized body before we blame its syntax
        raise ApiError(400, "invalid_json", "the request body is not valid JSON")
    if not isinstance(data, dict):
        raise ApiError(
            400, "invalid_json", f"the request body must be a JSON object, got {type(data).__name__}"
        )
    settings = runtime().settings
    return model.model_validate(data, context={"max_text_chars": settings.max_text_chars})


def check_api_key() -> None:
    """Require the API key (``Authorization: Bearer <key>`` or ``X-API-Key``) when one is configured,
    or a public site key (``X-Site-Key``) within its limits (``server/site_keys.py``) when one is sent.

    Raises:
        ApiError: 401 when the key is missing or wrong; 403 for a site key used outside its limits.
    """
    if request.method == "OPTIONS":  # CORS preflights carry no credentials
        return
    if request.headers.get(site_keys.HEADER):
        site_keys.check_site_key(runtime().settings.site_key_origins)
        return
    expected = runtime().settings.api_key
    if not expected:
        return
    given = request.headers.get("X-API-Key", "")
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError(
            401,
            "unauthorized",
            "missing or wrong API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
        )


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
